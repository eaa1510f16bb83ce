// The bar at the top of every page, and the live connection's status badge.
import { signOut } from "./api";
import { h } from "./dom";
import { shareToken } from "./share";

export function topBar(...extra: HTMLElement[]): HTMLElement {
  const signOutButton = h(
    "button",
    { type: "button", class: "sign-out" },
    "Sign out",
  );
  signOutButton.addEventListener(
    "click",
    () => void signOut().then(() => location.assign("/signin")),
  );
  return h(
    "nav",
    { class: "top-bar" },
    h("a", { href: "/", class: "brand" }, "assay"),
    h("span", { class: "spacer" }),
    ...extra,
    // A page opened through a share link may have no account or session.
    shareToken === null
      ? h("a", { href: "/account", class: "account-link" }, "Account")
      : null,
    shareToken === null ? signOutButton : null,
  );
}

export function statusBadge(): {
  element: HTMLElement;
  set(state: string): void;
} {
  const element = h(
    "span",
    { class: "live-status", "data-state": "connecting" },
    "connecting",
  );
  return {
    element,
    set(state: string): void {
      element.dataset.state = state;
      element.textContent = state === "subscribed" ? "live" : state;
      document.body.dataset.live = state;
    },
  };
}
