// The reports HTTP API: create, list, rename and delete reports, and save versions.
import { request } from "./api";

export interface ReportSummary {
  id: string;
  project: string;
  title: string;
  created_by: string;
  created_at: number;
  updated_at: number;
}

/** A report as ``GET`` returns it, with whether the caller may change it. */
export interface ReportDetail extends ReportSummary {
  can_edit: boolean;
}

export interface Version {
  id: string;
  label: string;
  title: string;
  created_by: string;
  created_at: number;
}

const reports = (project: string): string =>
  `/api/v1/projects/${encodeURIComponent(project)}/reports`;

const report = (project: string, id: string): string =>
  `${reports(project)}/${encodeURIComponent(id)}`;

/** Send a JSON request and return its parsed response. It fails and waits out 429s as ``request`` does. */
export async function send<T>(
  path: string,
  method: string,
  body?: Record<string, unknown>,
): Promise<T> {
  const response = await request(path, {
    method,
    headers: body ? { "Content-Type": "application/json" } : {},
    body: body ? JSON.stringify(body) : undefined,
  });
  return (response.status === 204 ? null : await response.json()) as T;
}

/** The reports of a project, and whether the caller may create, rename and delete them. */
export interface ReportList {
  reports: ReportSummary[];
  can_edit: boolean;
}

export async function reportList(project: string): Promise<ReportList> {
  return send<ReportList>(reports(project), "GET");
}

export async function listReports(project: string): Promise<ReportSummary[]> {
  return (await reportList(project)).reports;
}

export async function getReport(
  project: string,
  id: string,
): Promise<ReportDetail> {
  return send<ReportDetail>(report(project, id), "GET");
}

export async function createReport(
  project: string,
  title: string,
): Promise<ReportSummary> {
  return send<ReportSummary>(reports(project), "POST", { title });
}

export async function renameReport(
  project: string,
  id: string,
  title: string,
): Promise<ReportSummary> {
  return send<ReportSummary>(report(project, id), "PATCH", { title });
}

export async function deleteReport(project: string, id: string): Promise<void> {
  await send<null>(report(project, id), "DELETE");
}

export async function saveVersion(
  project: string,
  id: string,
  label: string,
): Promise<Version> {
  return send<Version>(`${report(project, id)}/versions`, "POST", { label });
}

export async function listVersions(
  project: string,
  id: string,
): Promise<Version[]> {
  return (
    await send<{ versions: Version[] }>(
      `${report(project, id)}/versions`,
      "GET",
    )
  ).versions;
}

export async function whoAmI(): Promise<{ name: string; is_admin: boolean }> {
  return send<{ name: string; is_admin: boolean }>("/api/v1/whoami", "GET");
}

export async function restoreVersion(
  project: string,
  id: string,
  version: string,
): Promise<ReportSummary> {
  const path = `${report(project, id)}/versions/${encodeURIComponent(version)}/restore`;
  return send<ReportSummary>(path, "POST");
}
