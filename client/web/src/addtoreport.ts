// "Add to report" on a workspace panel: copy the panel and the runs it draws into a report.
import * as decoding from "lib0/decoding";
import { WebsocketProvider } from "y-websocket";
import * as Y from "yjs";
import type { PanelLayout } from "./api";
import { h } from "./dom";
import { createReport, listReports } from "./reportapi";
import { blockList, panelGridBlock, type RunSet } from "./reportdoc";
import { reportUrl } from "./reportlist";

const SYNC_TIMEOUT_MS = 10_000;
const NEW_REPORT = "";

/** Escape ``text`` for the filter language's regular expressions, matching letters in either case. */
export function caseInsensitivePattern(text: string): string {
  let pattern = "";
  for (const char of text) {
    const lower = char.toLowerCase();
    const upper = char.toUpperCase();
    if (lower !== upper && lower.length === 1 && upper.length === 1)
      pattern += `[${lower}${upper}]`;
    else if ("\\.^$|?*+()[]{}".includes(char)) pattern += `\\${char}`;
    else pattern += char;
  }
  return pattern;
}

/**
 * Build the filter that selects the runs the workspace's search box shows,
 * which contain the text in their name, id, state, group or a tag, in any case.
 * An empty search selects every run.
 */
export function searchFilter(search: string): string {
  if (!search) return "";
  const quoted = JSON.stringify(caseInsensitivePattern(search));
  return ["name", "id", "state", "group", "tags"]
    .map((field) => `${field} ~ ${quoted}`)
    .join(" or ");
}

/** Append ``block`` to the report's document through its room, and wait until it is sent. */
export async function appendToReport(
  reportId: string,
  block: Y.Map<unknown>,
): Promise<void> {
  const doc = new Y.Doc();
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const provider = new WebsocketProvider(
    `${scheme}//${location.host}/yjs/reports`,
    encodeURIComponent(reportId),
    doc,
    { disableBc: true },
  );
  provider.awareness.setLocalState(null);
  try {
    await new Promise<void>((resolve, reject) => {
      const timer = window.setTimeout(
        () =>
          reject(
            new Error(
              `The report did not load within ${SYNC_TIMEOUT_MS / 1000} s.`,
            ),
          ),
        SYNC_TIMEOUT_MS,
      );
      provider.messageHandlers[2] = (_encoder, decoder) => {
        if (decoding.readVarUint(decoder) === 0)
          reject(new Error(decoding.readVarString(decoder)));
      };
      provider.on("closed", ({ code, reason }) =>
        reject(
          new Error(`The server closed the report (code ${code}): ${reason}`),
        ),
      );
      provider.once("sync", () => {
        window.clearTimeout(timer);
        blockList(doc).push([block]);
        resolve();
      });
    });
    // The socket sends in order, so the update has left once the buffer is empty.
    while ((provider.ws?.bufferedAmount ?? 0) > 0)
      await new Promise((r) => setTimeout(r, 20));
  } finally {
    provider.destroy();
    doc.destroy();
  }
}

/** Create a button that opens a dialog to add ``panel`` with ``runSets`` to a new or existing report. */
export function addToReportButton(
  project: string,
  panel: () => PanelLayout,
  runSets: () => RunSet[],
): HTMLElement {
  const button = h(
    "button",
    {
      type: "button",
      title: "add to report",
      "aria-label": "add to report",
      "data-action": "add to report",
    },
    "+ report",
  );
  button.addEventListener(
    "click",
    () => void openDialog(project, panel(), runSets()),
  );
  return button;
}

async function openDialog(
  project: string,
  panel: PanelLayout,
  runSets: RunSet[],
): Promise<void> {
  const target = h("select", {
    class: "report-choice",
    "aria-label": "report",
  });
  target.append(h("option", { value: NEW_REPORT }, "New report"));
  const title = h("input", {
    class: "report-title-input",
    "aria-label": "new report title",
    placeholder: "Title of the new report",
  });
  const error = h("p", { class: "error", role: "alert" });
  const add = h(
    "button",
    { type: "button", class: "confirm-add-to-report" },
    "Add",
  );
  const cancel = h("button", { type: "button" }, "Cancel");

  const dialog = h(
    "dialog",
    { class: "add-to-report" },
    h("h2", {}, "Add to report"),
    h("label", {}, "Report ", target),
    title,
    error,
    h("div", { class: "dialog-buttons" }, add, cancel),
  );

  target.addEventListener("change", () => {
    title.hidden = target.value !== NEW_REPORT;
  });
  cancel.addEventListener("click", () => dialog.close());
  dialog.addEventListener("close", () => dialog.remove());

  add.addEventListener("click", () => {
    add.disabled = true;
    void addPanel(project, target.value, title.value, panel, runSets)
      .then((id) => location.assign(reportUrl(project, id)))
      .catch((reason: unknown) => {
        error.textContent =
          reason instanceof Error ? reason.message : String(reason);
        add.disabled = false;
      });
  });

  document.body.append(dialog);
  dialog.showModal();
  try {
    for (const report of await listReports(project))
      target.append(
        h("option", { value: report.id }, report.title || "Untitled report"),
      );
  } catch (reason) {
    error.textContent =
      reason instanceof Error ? reason.message : String(reason);
  }
}

async function addPanel(
  project: string,
  reportId: string,
  title: string,
  panel: PanelLayout,
  runSets: RunSet[],
): Promise<string> {
  const id =
    reportId === NEW_REPORT
      ? (await createReport(project, title)).id
      : reportId;
  const copy: PanelLayout = { ...structuredClone(panel), x: 0, y: 0 };
  await appendToReport(id, panelGridBlock(runSets, [copy]));
  return id;
}
