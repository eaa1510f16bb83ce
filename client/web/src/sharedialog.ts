// The report's share links: create one (view or edit, optional expiry), copy it once, revoke.
import {
  createShare,
  listShares,
  revokeShare,
  type Share,
  type ShareRole,
} from "./accessapi";
import { ApiError } from "./api";
import { formatTime, h } from "./dom";

function errorText(reason: unknown): string {
  return reason instanceof Error ? reason.message : String(reason);
}

/**
 * Return a "Share" button that opens the dialog, or null when the caller may
 * not manage the report's links. The API returns 403 to everyone but the
 * project's editors and admins.
 */
export async function shareButton(
  reportId: string,
): Promise<HTMLElement | null> {
  try {
    await listShares(reportId);
  } catch (reason) {
    if (reason instanceof ApiError && reason.status === 403) return null;
    throw reason;
  }
  const button = h(
    "button",
    { type: "button", class: "share-report" },
    "Share",
  );
  button.addEventListener("click", () => new ShareDialog(reportId).open());
  return button;
}

export class ShareDialog {
  private readonly role = h(
    "select",
    { class: "share-role", "aria-label": "share role" },
    h("option", { value: "view" }, "can view"),
    h("option", { value: "edit" }, "can edit"),
  );
  private readonly expiry = h("input", {
    type: "datetime-local",
    class: "share-expiry",
    "aria-label": "expires at (optional)",
  });
  private readonly error = h("p", {
    class: "error share-error",
    role: "alert",
  });
  /** The new link's URL, shown once: it is replaced by the next link and gone on close. */
  private readonly created = h("div", { class: "share-created" });
  private readonly rows = h("tbody");
  private readonly dialog: HTMLDialogElement;

  constructor(private readonly reportId: string) {
    const create = h(
      "button",
      { type: "button", class: "create-share" },
      "Create link",
    );
    create.addEventListener("click", () => {
      create.disabled = true;
      void this.create().finally(() => (create.disabled = false));
    });
    const close = h(
      "button",
      { type: "button", class: "close-share" },
      "Close",
    );
    close.addEventListener("click", () => this.dialog.close());
    this.dialog = h(
      "dialog",
      { class: "share-dialog" },
      h("h2", {}, "Share this report"),
      h(
        "p",
        { class: "share-help" },
        "Anyone who has a link opens this report without an account. " +
          "A view link shows the report read-only; an edit link lets them change it.",
      ),
      h(
        "div",
        { class: "share-form" },
        this.role,
        h("label", {}, "Expires (optional) ", this.expiry),
        create,
      ),
      this.error,
      this.created,
      h(
        "table",
        { class: "share-list" },
        h(
          "thead",
          {},
          h(
            "tr",
            {},
            ...["Role", "Created by", "Created", "Expires", "Revoked", ""].map(
              (text) => h("th", {}, text),
            ),
          ),
        ),
        this.rows,
      ),
      h("div", { class: "dialog-buttons" }, close),
    );
    this.dialog.addEventListener("close", () => this.dialog.remove());
  }

  open(): void {
    document.body.append(this.dialog);
    this.dialog.showModal();
    void this.load();
  }

  private async load(): Promise<void> {
    try {
      const shares = await listShares(this.reportId);
      this.rows.replaceChildren(...shares.map((share) => this.row(share)));
      this.dialog.dataset.shares = String(shares.length);
    } catch (reason) {
      this.error.textContent = errorText(reason);
    }
  }

  private async create(): Promise<void> {
    this.error.textContent = "";
    this.created.replaceChildren();
    let expiresAt: number | null = null;
    if (this.expiry.value) {
      // datetime-local has no time zone: the browser reads it as local time.
      const moment = new Date(this.expiry.value).getTime();
      if (Number.isNaN(moment)) {
        this.error.textContent = `The expiry ${this.expiry.value} is not a valid date and time.`;
        return;
      }
      expiresAt = moment / 1000;
    }
    try {
      const share = await createShare(
        this.reportId,
        this.role.value as ShareRole,
        expiresAt,
      );
      this.showCreated(share.url ?? "");
      await this.load();
    } catch (reason) {
      this.error.textContent = errorText(reason);
    }
  }

  private showCreated(url: string): void {
    const field = h("input", {
      class: "share-url",
      "aria-label": "new share link",
      readonly: true,
      value: url,
    });
    const copy = h("button", { type: "button", class: "copy-share" }, "Copy");
    const copied = h("span", { class: "share-copied", role: "status" });
    copy.addEventListener("click", () => {
      field.select();
      navigator.clipboard
        .writeText(url)
        .then(() => (copied.textContent = "Copied."))
        .catch((reason: unknown) => {
          copied.textContent = `Copying failed (${errorText(reason)}); the link is selected, copy it by hand.`;
        });
    });
    this.created.replaceChildren(
      h(
        "p",
        {},
        "This link is shown only now; copy it before you close this dialog.",
      ),
      h("div", { class: "share-url-row" }, field, copy, copied),
    );
  }

  private row(share: Share): HTMLElement {
    const revoke = h(
      "button",
      { type: "button", class: "revoke-share" },
      "Revoke",
    );
    revoke.addEventListener("click", () => {
      revoke.disabled = true;
      this.error.textContent = "";
      revokeShare(this.reportId, share.id)
        .then(() => this.load())
        .catch((reason: unknown) => {
          this.error.textContent = errorText(reason);
          revoke.disabled = false;
        });
    });
    const time = (seconds: number | null, none: string): string =>
      seconds === null ? none : formatTime(seconds);
    return h(
      "tr",
      {
        "data-share-id": share.id,
        "data-revoked": String(share.revoked_at !== null),
      },
      h("td", { class: "share-role-cell" }, share.role),
      h("td", {}, share.created_by),
      h("td", {}, formatTime(share.created_at)),
      h("td", {}, time(share.expires_at, "never")),
      h("td", { class: "share-revoked-cell" }, time(share.revoked_at, "")),
      h("td", {}, share.revoked_at === null ? revoke : null),
    );
  }
}
