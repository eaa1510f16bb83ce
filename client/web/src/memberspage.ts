// A project's members page: roles for everyone to read; add, change, remove and visibility for admins.
import {
  listMembers,
  removeMember,
  setMember,
  setVisibility,
  type Member,
  type Members,
  type ProjectRole,
} from "./accessapi";
import { ApiError } from "./api";
import { topBar } from "./chrome";
import { append, h } from "./dom";

const ROLES: ProjectRole[] = ["viewer", "editor", "admin"];

function errorText(reason: unknown): string {
  return reason instanceof Error ? reason.message : String(reason);
}

function roleSelect(role: ProjectRole, label: string): HTMLSelectElement {
  const select = h("select", { class: "member-role", "aria-label": label });
  for (const value of ROLES)
    select.append(h("option", { value, selected: value === role }, value));
  return select;
}

export class MembersPage {
  private readonly error = h("p", {
    class: "error members-error",
    role: "alert",
  });
  private readonly body = h("div", { class: "members-body" });

  constructor(
    private readonly root: HTMLElement,
    private readonly project: string,
  ) {}

  async start(): Promise<void> {
    const workspace = h(
      "a",
      {
        href: `/projects/${encodeURIComponent(this.project)}`,
        class: "reports-link",
      },
      "Workspace",
    );
    this.root.replaceChildren(
      topBar(workspace),
      h(
        "main",
        { class: "members" },
        h("h1", {}, `Members of ${this.project}`),
        this.error,
        this.body,
      ),
    );
    try {
      await this.load();
    } catch (reason) {
      if (!(reason instanceof ApiError) || reason.status !== 404) throw reason;
      this.body.replaceChildren(h("p", {}, "Project not found."));
      this.error.textContent = reason.message;
    }
    document.body.dataset.loaded = "1";
  }

  /** Fetch the members again and redraw; API errors raise. */
  private async load(): Promise<void> {
    const members = await listMembers(this.project);
    const admin = members.caller_role === "admin";
    this.body.replaceChildren();
    append(
      this.body,
      this.visibility(members, admin),
      h(
        "table",
        { class: "member-list" },
        h(
          "thead",
          {},
          h("tr", {}, h("th", {}, "User"), h("th", {}, "Role"), h("th", {})),
        ),
        h(
          "tbody",
          {},
          ...members.members.map((member) => this.row(member, admin)),
        ),
      ),
      admin ? this.addForm() : null,
    );
    this.body.dataset.role = members.caller_role;
    this.body.dataset.visibility = members.visibility;
  }

  /** Run an admin action, then reload the list; show the API's error inline. */
  private act(action: () => Promise<unknown>): void {
    this.error.textContent = "";
    action()
      .then(() => this.load())
      .catch((reason: unknown) => {
        this.error.textContent = errorText(reason);
      });
  }

  private visibility(members: Members, admin: boolean): HTMLElement {
    const text =
      members.visibility === "public"
        ? "Public: everyone, signed in or not, may view this project."
        : "Private: only members may view this project.";
    const shown = h("span", { class: "project-visibility" }, text);
    if (!admin) return h("p", {}, shown);
    const next = members.visibility === "public" ? "private" : "public";
    const toggle = h(
      "button",
      { type: "button", class: "toggle-visibility" },
      `Make ${next}`,
    );
    toggle.addEventListener("click", () =>
      this.act(() => setVisibility(this.project, next)),
    );
    return h("p", {}, shown, " ", toggle);
  }

  private row(member: Member, admin: boolean): HTMLElement {
    const cells: HTMLElement[] = [
      h("td", { class: "member-name" }, member.name),
    ];
    if (!admin || member.owner) {
      cells.push(
        h("td", {}, member.owner ? `${member.role} (owner)` : member.role),
        h("td"),
      );
    } else {
      const role = roleSelect(member.role, `role of ${member.name}`);
      role.addEventListener("change", () =>
        this.act(() =>
          setMember(this.project, member.name, role.value as ProjectRole),
        ),
      );
      const remove = h(
        "button",
        { type: "button", class: "remove-member" },
        "Remove",
      );
      remove.addEventListener("click", () =>
        this.act(() => removeMember(this.project, member.name)),
      );
      cells.push(h("td", {}, role), h("td", {}, remove));
    }
    return h("tr", { "data-member": member.name }, ...cells);
  }

  private addForm(): HTMLElement {
    const name = h("input", {
      class: "new-member-name",
      "aria-label": "user name",
      placeholder: "user name",
    });
    const role = roleSelect("viewer", "role of the new member");
    role.classList.replace("member-role", "new-member-role");
    const add = h(
      "button",
      { type: "button", class: "add-member" },
      "Add member",
    );
    add.addEventListener("click", () => {
      const user = name.value.trim();
      if (!user) {
        this.error.textContent = "Type the name of the user to add.";
        return;
      }
      this.act(() => setMember(this.project, user, role.value as ProjectRole));
    });
    return h("div", { class: "add-member-form" }, name, role, add);
  }
}
