// The account endpoints: sign-in, password changes and the user's API keys.
import { sendJson } from "./api";

export interface User {
  name: string;
  is_admin: boolean;
}

export interface ApiKey {
  id: number;
  name: string;
  prefix: string;
  created_at: number;
  revoked_at: number | null;
}

export async function signIn(name: string, password: string): Promise<User> {
  return sendJson<User>("/api/v1/session", "POST", { name, password });
}

export async function whoami(): Promise<User> {
  return sendJson<User>("/api/v1/whoami", "GET");
}

export async function changePassword(
  current: string,
  next: string,
): Promise<void> {
  await sendJson("/api/v1/me/password", "POST", { current, new: next });
}

export async function listKeys(): Promise<ApiKey[]> {
  return (await sendJson<{ keys: ApiKey[] }>("/api/v1/me/keys", "GET")).keys;
}

/** Create a key; the response is the only place the key itself ever appears. */
export async function createKey(
  name: string,
): Promise<ApiKey & { key: string }> {
  return sendJson("/api/v1/me/keys", "POST", { name });
}

export async function revokeKey(id: number): Promise<ApiKey> {
  return sendJson<ApiKey>(`/api/v1/me/keys/${id}`, "DELETE");
}
