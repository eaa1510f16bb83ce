// The notice a share link shows while the server's rate limit rejects it, with the time to try again.
import { h } from "./dom";

/**
 * Return the whole seconds of the ``data-retry-after`` attribute that the
 * server puts on the page's root element when it returns 429 for the page,
 * or null when the page was served without one.
 */
export function pageRetryAfter(root: HTMLElement): number | null {
  const value = Number(root.dataset.retryAfter);
  return Number.isInteger(value) && value > 0 ? value : null;
}

/**
 * Build the rate-limit notice. With ``retryAfter`` seconds known, it counts
 * down to the time to try again, each second. Without them it shows the
 * server's ``reason``, which names the wait itself.
 */
export function retryNotice(
  retryAfter: number | null,
  reason: string,
): HTMLElement {
  const button = h(
    "button",
    { type: "button", class: "try-again", onclick: () => location.reload() },
    "Try again",
  );
  const notice = h(
    "main",
    { class: "report-failure rate-limited" },
    h("h1", {}, "Too many share-link look-ups"),
  );
  if (retryAfter === null) {
    notice.append(h("p", {}, sentence(reason)), button);
    return notice;
  }
  const deadline = Date.now() + retryAfter * 1000;
  const clock = new Date(deadline).toLocaleTimeString();
  const wait = h("p", { class: "retry-wait", role: "timer" });
  const update = (): boolean => {
    const left = Math.ceil((deadline - Date.now()) / 1000);
    if (left <= 0) {
      wait.textContent = "You can try again now.";
      wait.dataset.secondsLeft = "0";
      return false;
    }
    const unit = left === 1 ? "second" : "seconds";
    wait.textContent = `Try again in ${left} ${unit}, at ${clock}.`;
    wait.dataset.secondsLeft = String(left);
    return true;
  };
  update();
  const timer = setInterval(() => {
    // The timer stops when the wait ends, or when the page replaced the notice.
    if (!update() || !notice.isConnected) clearInterval(timer);
  }, 1000);
  notice.append(
    h(
      "p",
      {},
      "Too many invalid share links were opened from your network address, " +
        "so the server rejects every share link from it for a while.",
    ),
    wait,
    button,
  );
  return notice;
}

/** Capitalize ``text`` and end it with a full stop. */
function sentence(text: string): string {
  const capitalized = text.charAt(0).toUpperCase() + text.slice(1);
  return capitalized.endsWith(".") ? capitalized : `${capitalized}.`;
}
