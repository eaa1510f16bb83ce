// A CodeMirror 6 editor bound to a Y.Text, showing the other editors' cursors and names.
import { markdown } from "@codemirror/lang-markdown";
import { EditorState } from "@codemirror/state";
import { EditorView, keymap, placeholder } from "@codemirror/view";
import { minimalSetup } from "codemirror";
import { yCollab, ySyncAnnotation } from "y-codemirror.next";
import type { WebsocketProvider } from "y-websocket";
import * as Y from "yjs";

export interface TextEditorOptions {
  placeholder: string;
  /** Whether the text stays on one line, with Enter ignored, as for titles and headings. */
  singleLine?: boolean;
  readOnly?: boolean;
}

/** Create an editor whose content is ``text``. Undo and redo cover only this person's edits. */
export function textEditor(
  text: Y.Text,
  awareness: WebsocketProvider["awareness"],
  options: TextEditorOptions,
): EditorView {
  const undoManager = new Y.UndoManager(text);
  const extensions = [
    minimalSetup,
    EditorView.lineWrapping,
    placeholder(options.placeholder),
    yCollab(text, awareness, { undoManager }),
    EditorState.readOnly.of(options.readOnly ?? false),
    EditorView.editable.of(!options.readOnly),
  ];
  if (options.singleLine) {
    extensions.push(
      keymap.of([{ key: "Enter", run: () => true }]),
      // A local change that adds a line break, such as a paste, is dropped
      // whole. One that arrives from another editor must pass, or this view
      // would no longer match the Y.Text.
      EditorState.transactionFilter.of((transaction) =>
        transaction.newDoc.lines > 1 &&
        transaction.annotation(ySyncAnnotation) === undefined
          ? []
          : transaction,
      ),
    );
  } else {
    extensions.push(markdown());
  }
  return new EditorView({
    state: EditorState.create({ doc: text.toString(), extensions }),
  });
}
