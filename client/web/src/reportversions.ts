// The saved versions of a report: save one, list them, and restore one into the live document.
import { formatTime, h } from "./dom";
import {
  listVersions,
  restoreVersion,
  saveVersion,
  type Version,
} from "./reportapi";

export class VersionList {
  readonly element: HTMLElement;
  private readonly list = h("ul", { class: "version-list" });

  constructor(
    private readonly project: string,
    private readonly reportId: string,
    private readonly report: (message: string, isError: boolean) => void,
    /** Whether the list has no "Save version" and "Restore" buttons. */
    private readonly readOnly = false,
  ) {
    const save = h(
      "button",
      { type: "button", class: "save-version" },
      "Save version",
    );
    save.addEventListener("click", () => void this.save());
    const details = h(
      "details",
      { class: "versions" },
      h("summary", {}, "Versions"),
      this.list,
    );
    details.addEventListener("toggle", () => {
      if (details.open) void this.load();
    });
    this.element = h(
      "span",
      { class: "version-tools" },
      readOnly ? null : save,
      details,
    );
  }

  private async save(): Promise<void> {
    try {
      const version = await saveVersion(this.project, this.reportId, "");
      this.report(
        `Saved a version at ${formatTime(version.created_at)}.`,
        false,
      );
      document.body.dataset.versions = String(
        Number(document.body.dataset.versions ?? 0) + 1,
      );
      await this.load();
    } catch (error) {
      this.report(errorText(error), true);
    }
  }

  private async load(): Promise<void> {
    try {
      const versions = await listVersions(this.project, this.reportId);
      this.list.replaceChildren(...versions.map((v) => this.row(v)));
      if (versions.length === 0)
        this.list.append(h("li", {}, "No saved versions yet."));
    } catch (error) {
      this.report(errorText(error), true);
    }
  }

  private row(version: Version): HTMLElement {
    const restore = h(
      "button",
      { type: "button", class: "restore-version" },
      "Restore",
    );
    restore.addEventListener("click", () => {
      restoreVersion(this.project, this.reportId, version.id)
        .then(() =>
          this.report(
            `Restored the version of ${formatTime(version.created_at)}.`,
            false,
          ),
        )
        .catch((error: unknown) => this.report(errorText(error), true));
    });
    const label = version.label ? ` "${version.label}"` : "";
    return h(
      "li",
      { "data-version-id": version.id },
      `${formatTime(version.created_at)} by ${version.created_by}${label}: ${version.title} `,
      this.readOnly ? null : restore,
    );
  }
}

function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
