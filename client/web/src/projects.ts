// The projects list, the first page after signing in.
import { listProjects } from "./api";
import { topBar } from "./chrome";
import { formatTime, h } from "./dom";

export async function projectsPage(root: HTMLElement): Promise<void> {
  const projects = await listProjects();
  const rows = projects.map((project) =>
    h(
      "tr",
      { "data-project": project.name },
      h(
        "td",
        {},
        h(
          "a",
          { href: `/projects/${encodeURIComponent(project.name)}` },
          project.name,
        ),
      ),
      h("td", {}, String(project.run_count)),
      h("td", {}, formatTime(project.created_at)),
    ),
  );
  const body = projects.length
    ? h(
        "table",
        { class: "projects" },
        h(
          "thead",
          {},
          h(
            "tr",
            {},
            h("th", {}, "project"),
            h("th", {}, "runs"),
            h("th", {}, "created"),
          ),
        ),
        h("tbody", {}, ...rows),
      )
    : h(
        "p",
        {},
        "No projects yet. Log a run with assay.init(project=...) and it appears here.",
      );
  root.replaceChildren(topBar(), h("main", {}, h("h1", {}, "Projects"), body));
  document.body.dataset.loaded = "1";
}
