// The account page: change the password, and create, list and revoke API keys.
import {
  type ApiKey,
  changePassword,
  createKey,
  listKeys,
  revokeKey,
  whoami,
} from "./accountapi";
import { ApiError } from "./api";
import { topBar } from "./chrome";
import { formatTime, h } from "./dom";

function message(failure: unknown): string {
  return failure instanceof ApiError ? failure.message : String(failure);
}

/** Show `text` in a form's status line, as an error or as a confirmation. */
function report(status: HTMLElement, text: string, isError: boolean): void {
  status.textContent = text;
  status.classList.toggle("form-error", isError);
  status.classList.toggle("form-ok", !isError);
  status.setAttribute("role", isError ? "alert" : "status");
  status.hidden = false;
}

function passwordForm(): HTMLElement {
  const field = (name: string, autocomplete: string): HTMLInputElement =>
    h("input", { name, type: "password", autocomplete, required: true });
  const current = field("current", "current-password");
  const next = field("new", "new-password");
  const repeat = field("repeat", "new-password");
  const status = h("p", { class: "form-status", hidden: true });
  const form = h(
    "form",
    { class: "change-password" },
    h("h2", {}, "Password"),
    h("label", {}, "Current password", current),
    h("label", {}, "New password (at least 10 characters)", next),
    h("label", {}, "New password again", repeat),
    status,
    h("button", { type: "submit" }, "Change password"),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    status.hidden = true;
    if (next.value !== repeat.value) {
      report(status, "The two new passwords differ.", true);
      return;
    }
    changePassword(current.value, next.value)
      .then(() => {
        form.reset();
        report(
          status,
          "Password changed. Your other browser sessions are signed out.",
          false,
        );
      })
      .catch((failure: unknown) => report(status, message(failure), true));
  });
  return form;
}

function keyRow(key: ApiKey, refresh: () => Promise<void>): HTMLElement {
  const state = key.revoked_at
    ? h("td", {}, `revoked ${formatTime(key.revoked_at)}`)
    : h(
        "td",
        {},
        h(
          "button",
          {
            type: "button",
            class: "revoke-key",
            onclick: () => void revokeKey(key.id).then(refresh),
          },
          "Revoke",
        ),
      );
  return h(
    "tr",
    { "data-key-id": String(key.id) },
    h("td", {}, key.name),
    h("td", {}, h("code", {}, `${key.prefix}…`)),
    h("td", {}, formatTime(key.created_at)),
    state,
  );
}

function keysSection(): { element: HTMLElement; refresh: () => Promise<void> } {
  const body = h("tbody");
  const name = h("input", { name: "key-name", required: true, maxlength: 128 });
  const status = h("p", { class: "form-status", hidden: true });
  const created = h("div", { class: "new-key", hidden: true });
  const refresh = async (): Promise<void> => {
    const keys = await listKeys();
    body.replaceChildren(...keys.map((key) => keyRow(key, refresh)));
  };
  const form = h(
    "form",
    { class: "create-key" },
    h("label", {}, "Key name", name),
    h("button", { type: "submit" }, "Create key"),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    status.hidden = true;
    createKey(name.value)
      .then(async (key) => {
        form.reset();
        created.replaceChildren(
          h("p", {}, "Your new key. Copy it now: it is not shown again."),
          h("code", { class: "key-value" }, key.key),
        );
        created.hidden = false;
        await refresh();
      })
      .catch((failure: unknown) => report(status, message(failure), true));
  });
  const table = h(
    "table",
    { class: "api-keys" },
    h(
      "thead",
      {},
      h(
        "tr",
        {},
        h("th", {}, "name"),
        h("th", {}, "prefix"),
        h("th", {}, "created"),
        h("th", {}, ""),
      ),
    ),
    body,
  );
  const element = h(
    "section",
    { class: "keys" },
    h("h2", {}, "API keys"),
    h("p", {}, "Training jobs and `assay.Api` authenticate with these keys."),
    form,
    status,
    created,
    table,
  );
  return { element, refresh };
}

export async function accountPage(root: HTMLElement): Promise<void> {
  const user = await whoami();
  const keys = keysSection();
  await keys.refresh();
  root.replaceChildren(
    topBar(),
    h(
      "main",
      { class: "narrow" },
      h("h1", {}, "Account"),
      h("p", { class: "signed-in-as" }, `Signed in as ${user.name}`),
      passwordForm(),
      keys.element,
    ),
  );
  document.body.dataset.loaded = "1";
}
