// Share-link mode: a report page opened with ?share=TOKEN works without an account.

/** The token of the page's ``share`` query parameter, or null outside share-link mode. */
export const shareToken: string | null = new URLSearchParams(
  location.search,
).get("share");

/** Return ``path`` with the page's ``share`` parameter added, so a share link authorizes it. */
export function withShare(path: string): string {
  if (shareToken === null) return path;
  const url = new URL(path, location.origin);
  url.searchParams.set("share", shareToken);
  return `${url.pathname}${url.search}`;
}
