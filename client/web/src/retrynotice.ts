// The notices a share link shows while the server's rate limit rejects it, with the time to try again:
// one in place of the page, and one above a loaded report.
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

/** The explanation of the limit, shown above a countdown. */
const LIMIT_REASON =
  "Too many invalid share links were opened from your network address, " +
  "so the server rejects every share link from it for a while.";

/**
 * Build the rate-limit notice that replaces the page. With ``retryAfter``
 * seconds known, it counts down to the time to try again, each second.
 * Without them it shows the server's ``reason``, which names the wait itself.
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
  notice.append(
    h("p", {}, LIMIT_REASON),
    // The timer stops when the wait ends, or when the page replaced the notice.
    countdown(
      retryAfter,
      () => notice.isConnected,
      () => undefined,
    ),
    button,
  );
  return notice;
}

/**
 * The notice that a loaded page shows above its content while the rate limit
 * rejects its requests. The requests wait until the countdown ends or the
 * user clicks "Try again now", and are then sent again.
 */
export class RateLimitNotice {
  readonly element = h("div", {
    class: "rate-limit-notice",
    role: "alert",
    hidden: true,
  });
  private waiting: Promise<void> | null = null;

  /**
   * Show the notice, and resolve when the requests may be sent again, which
   * is after ``retryAfter`` seconds or when the user clicks the button. Without
   * ``retryAfter`` it shows the server's ``reason`` and waits for the click.
   * Requests that get a 429 while the notice shows share its wait.
   */
  wait(retryAfter: number | null, reason: string): Promise<void> {
    this.waiting ??= new Promise((resolve) =>
      this.show(retryAfter, reason, resolve),
    );
    return this.waiting;
  }

  private show(
    retryAfter: number | null,
    reason: string,
    resolve: () => void,
  ): void {
    let ended = false;
    const end = (): void => {
      if (ended) return;
      ended = true;
      this.waiting = null;
      this.element.hidden = true;
      this.element.replaceChildren();
      resolve();
    };
    const button = h(
      "button",
      { type: "button", class: "retry-now", onclick: end },
      "Try again now",
    );
    const explanation =
      retryAfter === null
        ? h("p", {}, sentence(reason))
        : h("p", {}, LIMIT_REASON, " The report does not update until then.");
    const wait =
      retryAfter === null ? null : countdown(retryAfter, () => !ended, end);
    this.element.replaceChildren(
      h("strong", {}, "Too many share-link look-ups"),
      explanation,
      wait ?? "",
      button,
    );
    this.element.hidden = false;
  }
}

/**
 * Build the element that counts down ``retryAfter`` seconds, each second, and
 * calls ``ended`` once when they have passed. Its timer stops then, or as
 * soon as ``running`` returns false.
 */
function countdown(
  retryAfter: number,
  running: () => boolean,
  ended: () => void,
): HTMLElement {
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
    if (!running()) {
      clearInterval(timer);
    } else if (!update()) {
      clearInterval(timer);
      ended();
    }
  }, 1000);
  return wait;
}

/** Capitalize ``text`` and end it with a full stop. */
function sentence(text: string): string {
  const capitalized = text.charAt(0).toUpperCase() + text.slice(1);
  return capitalized.endsWith(".") ? capitalized : `${capitalized}.`;
}
