// The access HTTP API (docs/access.md): a report's share links, and a project's members.
import { send } from "./reportapi";

export type ShareRole = "view" | "edit";
export type ProjectRole = "viewer" | "editor" | "admin";
export type Visibility = "private" | "public";

/** A share link as listed; ``url`` and ``token`` are only in the response that creates it. */
export interface Share {
  id: string;
  report_id: string;
  role: ShareRole;
  created_at: number;
  created_by: string;
  expires_at: number | null;
  revoked_at: number | null;
  url?: string;
  token?: string;
}

export interface Member {
  name: string;
  role: ProjectRole;
  owner: boolean;
}

export interface Members {
  members: Member[];
  visibility: Visibility;
  caller_role: ProjectRole;
}

const shares = (reportId: string): string =>
  `/api/v1/reports/${encodeURIComponent(reportId)}/shares`;

const project = (name: string): string =>
  `/api/v1/projects/${encodeURIComponent(name)}`;

export async function listShares(reportId: string): Promise<Share[]> {
  return (await send<{ shares: Share[] }>(shares(reportId), "GET")).shares;
}

/** Create a link; ``expiresAt`` is Unix seconds, or null for a link that never expires. */
export async function createShare(
  reportId: string,
  role: ShareRole,
  expiresAt: number | null,
): Promise<Share> {
  return send<Share>(shares(reportId), "POST", {
    role,
    expires_at: expiresAt,
  });
}

export async function revokeShare(
  reportId: string,
  shareId: string,
): Promise<void> {
  await send<null>(
    `${shares(reportId)}/${encodeURIComponent(shareId)}`,
    "DELETE",
  );
}

export async function listMembers(name: string): Promise<Members> {
  return send<Members>(`${project(name)}/members`, "GET");
}

/** Add ``user`` to the project with ``role``, or change the role they have. */
export async function setMember(
  name: string,
  user: string,
  role: ProjectRole,
): Promise<Member> {
  const path = `${project(name)}/members/${encodeURIComponent(user)}`;
  return send<Member>(path, "PUT", { role });
}

export async function removeMember(name: string, user: string): Promise<void> {
  await send<null>(
    `${project(name)}/members/${encodeURIComponent(user)}`,
    "DELETE",
  );
}

export async function setVisibility(
  name: string,
  visibility: Visibility,
): Promise<void> {
  await send<unknown>(project(name), "PATCH", { visibility });
}
