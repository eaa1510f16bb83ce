// The reports of a project: open, create, rename and delete.
import { ApiError } from "./api";
import { topBar } from "./chrome";
import { formatTime, h } from "./dom";
import {
  createReport,
  deleteReport,
  renameReport,
  reportList,
  type ReportSummary,
} from "./reportapi";

export function reportUrl(project: string, id: string): string {
  return `/projects/${encodeURIComponent(project)}/reports/${encodeURIComponent(id)}`;
}

export async function reportsPage(
  root: HTMLElement,
  project: string,
): Promise<void> {
  const error = h("p", { class: "error", role: "alert" });
  const fail = (reason: unknown): void => {
    error.textContent =
      reason instanceof Error ? reason.message : String(reason);
  };
  let reports: ReportSummary[];
  let canEdit: boolean;
  try {
    ({ reports, can_edit: canEdit } = await reportList(project));
  } catch (reason) {
    if (!(reason instanceof ApiError) || reason.status !== 404) throw reason;
    root.replaceChildren(
      topBar(),
      h(
        "main",
        {},
        h("h1", {}, "Project not found"),
        h("p", {}, reason.message),
      ),
    );
    return;
  }
  const title = h("input", {
    class: "new-report-title",
    "aria-label": "new report title",
    placeholder: "Title of the new report",
  });
  const create = h(
    "button",
    { type: "button", class: "create-report" },
    "New report",
  );
  create.addEventListener("click", () => {
    createReport(project, title.value)
      .then((report) => location.assign(reportUrl(project, report.id)))
      .catch(fail);
  });
  const rows = reports.map((report) =>
    reportRow(project, report, fail, canEdit),
  );
  const table = reports.length
    ? h(
        "table",
        { class: "reports" },
        h(
          "thead",
          {},
          h(
            "tr",
            {},
            h("th", {}, "title"),
            h("th", {}, "by"),
            h("th", {}, "updated"),
            h("th", {}, ""),
          ),
        ),
        h("tbody", {}, ...rows),
      )
    : h(
        "p",
        {},
        canEdit
          ? "No reports yet. Create one here, or with Add to report on a workspace panel."
          : "No reports yet.",
      );
  const controls = canEdit
    ? h("div", { class: "new-report" }, title, create)
    : h(
        "p",
        { class: "read-only-notice", role: "note" },
        "Read-only: you can read these reports, but creating, renaming and deleting them needs the editor role.",
      );
  const workspace = h(
    "a",
    { href: `/projects/${encodeURIComponent(project)}` },
    "Workspace",
  );
  root.replaceChildren(
    topBar(workspace),
    h(
      "main",
      { class: "reports-page" },
      h("h1", {}, `Reports of ${project}`),
      controls,
      error,
      table,
    ),
  );
  document.body.dataset.loaded = "1";
}

function reportRow(
  project: string,
  report: ReportSummary,
  fail: (reason: unknown) => void,
  canEdit: boolean,
): HTMLElement {
  const link = h(
    "a",
    { href: reportUrl(project, report.id) },
    report.title || "Untitled report",
  );
  const rename = h(
    "button",
    { type: "button", class: "rename-report" },
    "Rename",
  );
  rename.addEventListener("click", () => {
    const title = window.prompt("New title", report.title);
    if (title === null) return;
    renameReport(project, report.id, title)
      .then((renamed) => {
        link.textContent = renamed.title || "Untitled report";
      })
      .catch(fail);
  });
  const remove = h(
    "button",
    { type: "button", class: "delete-report" },
    "Delete",
  );
  remove.addEventListener("click", () => {
    if (
      !window.confirm(
        `Delete the report "${report.title}"? This cannot be undone.`,
      )
    )
      return;
    deleteReport(project, report.id)
      .then(() => row.remove())
      .catch(fail);
  });
  const row = h(
    "tr",
    { "data-report-id": report.id },
    h("td", {}, link),
    h("td", {}, report.created_by),
    h("td", {}, formatTime(report.updated_at)),
    h("td", {}, ...(canEdit ? [rename, remove] : [])),
  );
  return row;
}
