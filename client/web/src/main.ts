// The router: the server serves one page shell for every path, and this draws the page.
import "./style.css";
import "./report.css";
import { accountPage } from "./account";
import { h } from "./dom";
import { MembersPage } from "./memberspage";
import { projectsPage } from "./projects";
import { ReportPage } from "./reportpage";
import { reportsPage } from "./reportlist";
import { RunPage } from "./runpage";
import { signInPage } from "./signin";
import { Workspace } from "./workspace";

async function route(root: HTMLElement): Promise<void> {
  const parts = location.pathname
    .split("/")
    .filter(Boolean)
    .map(decodeURIComponent);
  if (parts.length === 0) return projectsPage(root);
  if (parts.length === 1 && parts[0] === "signin") return signInPage(root);
  if (parts.length === 1 && parts[0] === "account") return accountPage(root);
  if (parts[0] === "projects" && parts.length === 2)
    return new Workspace(root, parts[1] ?? "").start();
  if (parts[0] === "projects" && parts[2] === "runs" && parts.length === 4) {
    return new RunPage(root, parts[1] ?? "", parts[3] ?? "").start();
  }
  if (parts[0] === "projects" && parts[2] === "members" && parts.length === 3)
    return new MembersPage(root, parts[1] ?? "").start();
  if (parts[0] === "projects" && parts[2] === "reports" && parts.length === 3)
    return reportsPage(root, parts[1] ?? "");
  if (parts[0] === "projects" && parts[2] === "reports" && parts.length === 4)
    return new ReportPage(root, parts[1] ?? "", parts[3] ?? "").start();
  root.replaceChildren(h("h1", {}, "Page not found"));
}

const root = document.getElementById("app");
if (root) {
  route(root).catch((error: unknown) => {
    console.error(error);
    root.replaceChildren(
      h("h1", {}, "Something went wrong"),
      h("pre", { class: "error" }, String(error)),
    );
  });
}
