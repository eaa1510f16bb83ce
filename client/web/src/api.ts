// The HTTP API client. Reads ask for msgpack, which keeps NaN and infinities as numbers.
import { decode } from "@msgpack/msgpack";
import type { Figure } from "plotly.js-dist-min";
import { withShare } from "./share";

export type Value =
  number | boolean | string | null | Value[] | { [key: string]: Value };

export interface Project {
  name: string;
  created_at: number;
  run_count: number;
}

export interface Run {
  id: string;
  project: string;
  name: string;
  state: string;
  config: Record<string, Value>;
  summary: Record<string, Value>;
  tags: string[];
  group: string | null;
  notes: string | null;
  created_at: number;
  heartbeat_at: number;
  finished_at: number | null;
  exit_code: number | null;
}

export interface PanelLayout {
  id: string;
  type: "line" | "scatter" | "bar" | "scalar" | "parallel";
  x: number;
  y: number;
  w: number;
  h: number;
  options: Record<string, Value>;
}

export interface Layout {
  auto: boolean;
  panels: PanelLayout[];
  columns: string[];
}

export interface FigureResponse {
  figure: Figure;
  runs: Record<
    string,
    { name: string; state: string; created_at: number; colour: string }
  >;
  /** Present when the figure draws run sets: per set, its members and drawn runs. */
  runsets?: Record<
    string,
    { members: number; drawn: string[]; grouped: boolean }
  >;
}

/** A stored run set (docs/runsets.md). */
export interface RunSet {
  id: string;
  name: string;
  filter: string;
  grouping: { keys: string[]; aggregate: string; band: string };
  sort: { field: string; direction: "asc" | "desc" };
  colour: string;
  active: boolean;
  position: number;
}

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    /** The 1-based column of a rejected filter. */
    readonly column: number | null = null,
    /** The whole seconds of a 429's ``Retry-After`` header. */
    readonly retryAfter: number | null = null,
  ) {
    super(message);
  }
}

/**
 * Build the ``ApiError`` of a failed ``response``, from its JSON or msgpack
 * error body, or with ``fallback`` as its message when it has none.
 */
export async function responseError(
  response: Response,
  fallback: string,
): Promise<ApiError> {
  let code = "http_error";
  let message = fallback;
  let column: number | null = null;
  try {
    const body = (await response.clone().json()) as {
      error?: { code: string; message: string; column?: number };
    };
    if (body.error) ({ code, message } = body.error);
    column = body.error?.column ?? null;
  } catch {
    try {
      const body = decode(new Uint8Array(await response.arrayBuffer())) as {
        error?: { code: string; message: string };
      };
      if (body.error) ({ code, message } = body.error);
    } catch {
      // Neither JSON nor msgpack: keep the generic message.
    }
  }
  const retryAfter = Number(response.headers.get("Retry-After") ?? "");
  return new ApiError(
    response.status,
    code,
    message,
    column,
    Number.isInteger(retryAfter) && retryAfter > 0 ? retryAfter : null,
  );
}

/** The function that waits out a 429 before its request is sent again, or null to raise the 429. */
let rateLimitWait: ((error: ApiError) => Promise<void>) | null = null;

/**
 * Set how requests wait out a 429 before they are sent again, or pass null
 * to make a 429 raise ``ApiError`` like any other failure, as it does by default.
 */
export function setRateLimitWait(
  wait: ((error: ApiError) => Promise<void>) | null,
): void {
  rateLimitWait = wait;
}

/**
 * Send ``init`` to ``path`` with the page's share token, and return the
 * response once it succeeds. Raise ``ApiError`` on failure, except on a 429
 * while a rate-limit wait is set, which is waited out before the request is sent again.
 */
export async function request(
  path: string,
  init: RequestInit = {},
): Promise<Response> {
  for (;;) {
    const response = await fetch(withShare(path), {
      credentials: "same-origin",
      ...init,
    });
    if (response.ok) return response;
    const error = await responseError(
      response,
      `${init.method ?? "GET"} ${path} failed with HTTP ${response.status}`,
    );
    if (error.status !== 429 || rateLimitWait === null) throw error;
    await rateLimitWait(error);
  }
}

async function getPacked<T>(path: string): Promise<T> {
  const response = await request(path, {
    headers: { Accept: "application/msgpack" },
  });
  return decode(new Uint8Array(await response.arrayBuffer())) as T;
}

const project = (name: string): string =>
  `/api/v1/projects/${encodeURIComponent(name)}`;

export async function listProjects(): Promise<Project[]> {
  return (await getPacked<{ projects: Project[] }>("/api/v1/projects"))
    .projects;
}

/** Fetch the project's runs, or those that ``filter`` (the run-set filter language) selects. */
export async function listRuns(name: string, filter = ""): Promise<Run[]> {
  const query = new URLSearchParams({ limit: "10000" });
  if (filter.trim()) query.set("filter", filter);
  const path = `${project(name)}/runs?${query.toString()}`;
  return (await getPacked<{ runs: Partial<Run>[] }>(path)).runs.map(
    completeRun,
  );
}

/**
 * Fill in the fields that runs listed through a share link leave out (only
 * metadata and the config and summary keys the report draws are sent), so
 * that panels read them as missing values instead of failing.
 */
export function completeRun(run: Partial<Run>): Run {
  return {
    id: run.id ?? "",
    project: run.project ?? "",
    name: run.name ?? run.id ?? "",
    state: run.state ?? "",
    config: run.config ?? {},
    summary: run.summary ?? {},
    tags: run.tags ?? [],
    group: run.group ?? null,
    notes: run.notes ?? null,
    created_at: run.created_at ?? 0,
    heartbeat_at: run.heartbeat_at ?? 0,
    finished_at: run.finished_at ?? null,
    exit_code: run.exit_code ?? null,
  };
}

export async function getRun(name: string, runId: string): Promise<Run> {
  return getPacked<Run>(`${project(name)}/runs/${encodeURIComponent(runId)}`);
}

export async function listKeys(name: string): Promise<string[]> {
  return (await getPacked<{ keys: string[] }>(`${project(name)}/keys`)).keys;
}

export async function runKeys(name: string, runId: string): Promise<string[]> {
  const path = `${project(name)}/runs/${encodeURIComponent(runId)}/metrics`;
  return Object.keys(
    (await getPacked<{ metrics: Record<string, unknown> }>(path)).metrics,
  );
}

export async function getFigure(
  name: string,
  query: URLSearchParams,
): Promise<FigureResponse> {
  const response = await request(`${project(name)}/figure?${query.toString()}`);
  return (await response.json()) as FigureResponse;
}

export async function getLayout(name: string): Promise<Layout | null> {
  return (await getPacked<{ layout: Layout | null }>(`${project(name)}/layout`))
    .layout;
}

export async function putLayout(name: string, layout: Layout): Promise<void> {
  await request(`${project(name)}/layout`, {
    method: "PUT",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(layout),
  });
}

export async function sendJson<T>(
  path: string,
  method: string,
  body?: unknown,
): Promise<T> {
  const init: RequestInit = { method };
  if (body !== undefined) {
    init.headers = { "Content-Type": "application/json" };
    init.body = JSON.stringify(body);
  }
  const response = await request(path, init);
  return (await response.json()) as T;
}

export async function listRunsets(name: string): Promise<RunSet[]> {
  return (
    await sendJson<{ runsets: RunSet[] }>(`${project(name)}/runsets`, "GET")
  ).runsets;
}

export async function createRunset(
  name: string,
  fields: Partial<RunSet>,
): Promise<RunSet> {
  return sendJson<RunSet>(`${project(name)}/runsets`, "POST", fields);
}

export async function updateRunset(
  name: string,
  id: string,
  changes: Partial<RunSet>,
): Promise<RunSet> {
  const path = `${project(name)}/runsets/${encodeURIComponent(id)}`;
  return sendJson<RunSet>(path, "PATCH", changes);
}

export async function deleteRunset(name: string, id: string): Promise<void> {
  await request(`${project(name)}/runsets/${encodeURIComponent(id)}`, {
    method: "DELETE",
  });
}

/** Clone or freeze a run set; both return the run set they produce. */
export async function runsetAction(
  name: string,
  id: string,
  action: "clone" | "freeze",
): Promise<RunSet> {
  const path = `${project(name)}/runsets/${encodeURIComponent(id)}/${action}`;
  return sendJson<RunSet>(path, "POST");
}

export async function signOut(): Promise<void> {
  await request("/api/v1/session", { method: "DELETE" });
}
