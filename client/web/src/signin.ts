// The sign-in page: a name and password form that posts with fetch, then goes to `next`.
import { signIn } from "./accountapi";
import { ApiError } from "./api";
import { h } from "./dom";

/** Return the `next` query parameter when it is a path on this server, else "/". */
export function nextPath(): string {
  const next = new URLSearchParams(location.search).get("next") ?? "/";
  return next.startsWith("/") && !next.startsWith("//") && !next.includes("\\")
    ? next
    : "/";
}

export function signInPage(root: HTMLElement): void {
  const name = h("input", {
    name: "name",
    autocomplete: "username",
    required: true,
    autofocus: true,
  });
  const password = h("input", {
    name: "password",
    type: "password",
    autocomplete: "current-password",
    required: true,
  });
  const error = h("p", { class: "form-error", role: "alert", hidden: true });
  const submit = h("button", { type: "submit" }, "Sign in");
  const form = h(
    "form",
    { class: "sign-in" },
    h("label", {}, "Name", name),
    h("label", {}, "Password", password),
    error,
    submit,
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    submit.disabled = true;
    error.hidden = true;
    signIn(name.value, password.value)
      .then(() => location.assign(nextPath()))
      .catch((failure: unknown) => {
        error.textContent =
          failure instanceof ApiError ? failure.message : String(failure);
        error.hidden = false;
        submit.disabled = false;
        password.select();
      });
  });
  root.replaceChildren(
    h(
      "main",
      { class: "narrow" },
      h("h1", {}, "Sign in to assay"),
      form,
      h(
        "p",
        { class: "hint" },
        "No password yet? Open the link that `assay serve` printed " +
          "(/login?token=API_KEY), or ask an admin to run " +
          "`assay admin set-password NAME`.",
      ),
    ),
  );
  document.body.dataset.loaded = "1";
}
