/**
 * Vulnerability-scan gate on Harbor, and the reading of Harbor's quota errors.
 *
 * scanGate asks Harbor to scan a pushed digest, polls the artifact's scan overview (with backoff,
 * up to a time limit) and decides whether the image may go on: it fails when vulnerabilities of
 * `maxSeverity` or worse exist ("none": any vulnerability fails), when the scan ends in Error or
 * Stopped, or when it does not finish in time.
 */
import { ThinkubeImageError, ValidationError, type FieldProblem } from '../core/errors.js';
import {
  VULNERABILITY_REPORT_MIME_TYPES,
  harborErrorsOf,
  type HarborClient,
  type HarborNativeReportSummary,
  type HarborQuota,
  type HarborResourceList,
} from './client.js';

export type MaxSeverity = 'critical' | 'high' | 'medium' | 'low' | 'none';
export const MAX_SEVERITIES: readonly MaxSeverity[] = ['critical', 'high', 'medium', 'low', 'none'];

/** How a gate ended: Harbor's final scan status, or Timeout when it never reached one. */
export type ScanGateStatus = 'Success' | 'Error' | 'Stopped' | 'Timeout';

export interface ScanGateOptions {
  project: string;
  /** Repository inside the project, e.g. jupyter-ml-cpu or team/app (slashes allowed). */
  repository: string;
  /** The pushed manifest digest, sha256:... */
  digest: string;
  /** The lowest severity that fails the gate; "none" fails on any vulnerability. Default critical. */
  maxSeverity?: MaxSeverity;
  /** Give up (and fail) when the scan has not finished after this long. Default 600. */
  timeoutSeconds?: number;
  /** First wait between polls; it grows by half each poll. Default 2000. */
  pollIntervalMs?: number;
  /** Cap of the wait between polls. Default 15000. */
  maxPollIntervalMs?: number;
}

export type ScanGateEvent =
  | { type: 'scan-requested'; project: string; repository: string; digest: string; accepted: boolean }
  | { type: 'scan-status'; status: string; elapsedMs: number; completePercent?: number }
  | { type: 'scan-finished'; result: ScanGateResult };

export interface ScanGateControls {
  signal?: AbortSignal;
  onEvent?: (event: ScanGateEvent) => void;
}

export interface SeverityCounts {
  critical: number;
  high: number;
  medium: number;
  low: number;
  /** Unknown, Negligible, None and any severity Harbor adds later. */
  unknown: number;
  total: number;
}

export interface ScanGateResult {
  status: ScanGateStatus;
  passed: boolean;
  counts: SeverityCounts;
  fixable?: number;
  /** Harbor's overall severity (None, Low, ..., Critical) for a finished scan. */
  severity?: string;
  maxSeverity: MaxSeverity;
  /** Counts by severity, e.g. "0 critical, 1 high, 2 medium, 0 low, 0 unknown (3 total)". */
  summary: string;
  /** One line: what the gate decided and why. */
  message: string;
  /** Why the gate failed (absent when it passed). */
  reason?: string;
  reportId?: string;
  /** e.g. "Trivy 0.50.1". */
  scanner?: string;
  project: string;
  repository: string;
  digest: string;
  elapsedMs: number;
}

const LEVEL: Record<MaxSeverity, number> = { none: 0, low: 1, medium: 2, high: 3, critical: 4 };
const TERMINAL = new Set(['Success', 'Error', 'Stopped']);
const DIGEST = /^sha256:[a-f0-9]{64}$/;

function checkOptions(options: ScanGateOptions): Required<ScanGateOptions> {
  const problems: FieldProblem[] = [];
  const o = options ?? ({} as ScanGateOptions);
  for (const f of ['project', 'repository'] as const) {
    if (typeof o[f] !== 'string' || o[f].length === 0) problems.push({ field: f, message: 'must be a non-empty string' });
  }
  if (typeof o.digest !== 'string' || !DIGEST.test(o.digest)) {
    problems.push({ field: 'digest', message: 'must be a sha256 digest: sha256: followed by 64 lowercase hex characters' });
  }
  const maxSeverity = o.maxSeverity ?? 'critical';
  if (!MAX_SEVERITIES.includes(maxSeverity)) problems.push({ field: 'maxSeverity', message: `must be one of ${MAX_SEVERITIES.join(', ')}` });
  const positive = (field: 'timeoutSeconds' | 'pollIntervalMs' | 'maxPollIntervalMs', value: number | undefined, fallback: number): number => {
    if (value === undefined) return fallback;
    if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) problems.push({ field, message: 'must be a positive number' });
    return value;
  };
  const timeoutSeconds = positive('timeoutSeconds', o.timeoutSeconds, 600);
  const pollIntervalMs = positive('pollIntervalMs', o.pollIntervalMs, 2000);
  const maxPollIntervalMs = positive('maxPollIntervalMs', o.maxPollIntervalMs, Math.max(15000, pollIntervalMs));
  if (problems.length) throw new ValidationError('scan gate options', problems);
  return { project: o.project, repository: o.repository, digest: o.digest, maxSeverity, timeoutSeconds, pollIntervalMs, maxPollIntervalMs };
}

/** The vulnerability report of a scan_overview: the preferred MIME type, else the first entry. */
export function pickScanReport(overview: Record<string, HarborNativeReportSummary> | null | undefined): HarborNativeReportSummary | undefined {
  if (!overview || typeof overview !== 'object') return undefined;
  for (const mime of VULNERABILITY_REPORT_MIME_TYPES) if (overview[mime]) return overview[mime];
  return Object.values(overview).find((v) => v && typeof v === 'object');
}

/** Counts by severity from a report summary (Harbor spells severities Critical, High, ...). */
export function severityCounts(report: HarborNativeReportSummary | undefined): SeverityCounts {
  const counts: SeverityCounts = { critical: 0, high: 0, medium: 0, low: 0, unknown: 0, total: 0 };
  const bySeverity = report?.summary?.summary ?? {};
  let sum = 0;
  for (const [name, raw] of Object.entries(bySeverity)) {
    const n = typeof raw === 'number' && Number.isFinite(raw) ? raw : 0;
    const key = name.toLowerCase();
    if (key === 'critical' || key === 'high' || key === 'medium' || key === 'low') counts[key] += n;
    else counts.unknown += n;
    sum += n;
  }
  const total = report?.summary?.total;
  counts.total = typeof total === 'number' && total >= sum ? total : sum;
  return counts;
}

export function describeCounts(counts: SeverityCounts): string {
  return `${counts.critical} critical, ${counts.high} high, ${counts.medium} medium, ${counts.low} low, ${counts.unknown} unknown (${counts.total} total)`;
}

function severityLevel(name: string | undefined): number {
  const key = (name ?? '').toLowerCase();
  return key in LEVEL && key !== 'none' ? LEVEL[key as MaxSeverity] : 0;
}

/** The counts at or above the threshold, e.g. "2 critical, 1 high"; empty when none. */
function breaches(counts: SeverityCounts, report: HarborNativeReportSummary | undefined, max: MaxSeverity): string {
  const threshold = LEVEL[max];
  const parts: string[] = [];
  for (const s of ['critical', 'high', 'medium', 'low'] as const) if (counts[s] > 0 && LEVEL[s] >= threshold) parts.push(`${counts[s]} ${s}`);
  if (max === 'none') {
    if (counts.unknown > 0) parts.push(`${counts.unknown} unknown`);
    // A total without a breakdown still means vulnerabilities.
    if (parts.length === 0 && counts.total > 0) parts.push(`${counts.total} of unreported severity`);
  }
  // Harbor's overall severity without counts (a scanner that gives no summary) still decides.
  if (parts.length === 0 && report?.severity && severityLevel(report.severity) > 0 && severityLevel(report.severity) >= threshold) {
    parts.push(`overall severity ${report.severity}`);
  }
  return parts.join(', ');
}

function reportKey(report: HarborNativeReportSummary | undefined): string | undefined {
  if (!report) return undefined;
  return `${report.report_id ?? ''}|${report.start_time ?? ''}|${report.end_time ?? ''}`;
}

function abortError(what: string): ThinkubeImageError {
  return new ThinkubeImageError('ERR_ABORTED', `Aborted while waiting for ${what}`);
}

function sleep(ms: number, signal: AbortSignal | undefined, what: string): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(abortError(what));
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(abortError(what));
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/**
 * Trigger Harbor's vulnerability scan of a digest, wait for it and decide. Returns passed=false
 * (with the reason) for vulnerabilities at or above maxSeverity, a failed or stopped scan, or a
 * timeout; throws only when Harbor cannot be asked (unreachable, credentials, missing artifact).
 */
export async function scanGate(client: HarborClient, options: ScanGateOptions, controls: ScanGateControls = {}): Promise<ScanGateResult> {
  const o = checkOptions(options);
  const { signal, onEvent } = controls;
  const emit = (event: ScanGateEvent): void => {
    try {
      onEvent?.(event);
    } catch {
      // A failing listener must not break the gate.
    }
  };
  const started = Date.now();
  const deadline = started + o.timeoutSeconds * 1000;
  const artifactName = `${o.project}/${o.repository}@${o.digest}`;
  const read = async (): Promise<HarborNativeReportSummary | undefined> =>
    pickScanReport((await client.getArtifact(o.project, o.repository, o.digest, { withScanOverview: true, withTag: false }, { signal })).scan_overview);

  // What the overview showed before this scan: a finished report still carrying it is the
  // previous scan (e.g. Harbor's scan on push), not ours.
  const before = await read();
  const staleKey = before && TERMINAL.has(before.scan_status ?? '') ? reportKey(before) : undefined;
  const trigger = await client.scanArtifact(o.project, o.repository, o.digest, { signal });
  emit({ type: 'scan-requested', project: o.project, repository: o.repository, digest: o.digest, accepted: trigger.accepted });

  let interval = o.pollIntervalMs;
  let lastStatus: string | undefined;
  let sawActive = false;
  let report: HarborNativeReportSummary | undefined;
  for (;;) {
    report = await read();
    const status = report?.scan_status ?? 'NotScanned';
    const elapsedMs = Date.now() - started;
    if (status !== lastStatus) {
      const event: ScanGateEvent = { type: 'scan-status', status, elapsedMs };
      if (typeof report?.complete_percent === 'number') event.completePercent = report.complete_percent;
      emit(event);
      lastStatus = status;
    }
    const stale = staleKey !== undefined && !sawActive && reportKey(report) === staleKey;
    if (TERMINAL.has(status) && !stale) break;
    if (!TERMINAL.has(status)) sawActive = true;
    const left = deadline - Date.now();
    if (left <= 0) {
      const result = finish(o, 'Timeout', report, started, stale
        ? `Harbor still shows the previous scan of ${artifactName} after ${o.timeoutSeconds} s; the new scan never started`
        : `the scan of ${artifactName} did not finish within ${o.timeoutSeconds} s (last status: ${status})`);
      emit({ type: 'scan-finished', result });
      return result;
    }
    await sleep(Math.min(interval, left), signal, `Harbor's scan of ${artifactName}`);
    interval = Math.min(Math.round(interval * 1.5), o.maxPollIntervalMs);
  }

  const status = report?.scan_status as 'Success' | 'Error' | 'Stopped';
  let reason: string | undefined;
  if (status === 'Error') {
    reason = `Harbor's scanner failed on ${artifactName} (scan status Error)`;
  } else if (status === 'Stopped') {
    reason = `the scan of ${artifactName} was stopped before it finished`;
  } else {
    const over = breaches(severityCounts(report), report, o.maxSeverity);
    if (over) {
      reason = o.maxSeverity === 'none'
        ? `${artifactName} has vulnerabilities (${over}) and max severity is none`
        : `${artifactName} has vulnerabilities of severity ${o.maxSeverity} or worse: ${over}`;
    }
  }
  const result = finish(o, status, report, started, reason);
  emit({ type: 'scan-finished', result });
  return result;
}

function finish(
  o: Required<ScanGateOptions>,
  status: ScanGateStatus,
  report: HarborNativeReportSummary | undefined,
  started: number,
  reason: string | undefined,
): ScanGateResult {
  // Counts only mean something for a finished, successful report.
  const counts = status === 'Success' ? severityCounts(report) : { critical: 0, high: 0, medium: 0, low: 0, unknown: 0, total: 0 };
  const summary = status === 'Success' ? describeCounts(counts) : `no result (scan ${status === 'Timeout' ? 'timed out' : status})`;
  const passed = reason === undefined;
  const result: ScanGateResult = {
    status,
    passed,
    counts,
    maxSeverity: o.maxSeverity,
    summary,
    message: passed
      ? `Scan of ${o.project}/${o.repository}@${o.digest} passed (max severity ${o.maxSeverity}): ${summary}`
      : `Scan gate failed: ${reason}${status === 'Success' ? ` (${summary})` : ''}`,
    project: o.project,
    repository: o.repository,
    digest: o.digest,
    elapsedMs: Date.now() - started,
  };
  if (reason !== undefined) result.reason = reason;
  if (status === 'Success') {
    if (typeof report?.summary?.fixable === 'number') result.fixable = report.summary.fixable;
    if (report?.severity) result.severity = report.severity;
  }
  if (report?.report_id) result.reportId = report.report_id;
  const scanner = scannerName(report);
  if (scanner) result.scanner = scanner;
  return result;
}

/** "Trivy 0.50.1" from a report summary, or undefined. */
function scannerName(report: HarborNativeReportSummary | undefined): string | undefined {
  return report?.scanner?.name ? [report.scanner.name, report.scanner.version].filter(Boolean).join(' ') : undefined;
}

/**
 * The last finished scan Harbor holds for a digest, without starting one (a read: check mode uses
 * it to predict what the real run registers). Undefined when there is none that succeeded.
 */
export async function lastScan(client: HarborClient, artifact: { project: string; repository: string; digest: string }, signal?: AbortSignal): Promise<{ counts: SeverityCounts; scanner?: string } | undefined> {
  const report = pickScanReport((await client.getArtifact(artifact.project, artifact.repository, artifact.digest, { withScanOverview: true, withTag: false }, { signal })).scan_overview);
  if (report?.scan_status !== 'Success') return undefined;
  const scanner = scannerName(report);
  return { counts: severityCounts(report), ...(scanner ? { scanner } : {}) };
}

/** The error a pipeline throws for a failed gate (code ERR_SCAN_GATE), details carrying the result. */
export function scanGateError(result: ScanGateResult): ThinkubeImageError {
  const hint =
    result.status === 'Success'
      ? `Update the base image or the packages to fixed versions (${result.fixable ?? 'some'} fixable), or set max_severity above ${result.maxSeverity} if the risk is accepted`
      : result.status === 'Timeout'
        ? "Check Harbor's scanner (Interrogation Services) and job service, or raise the scan timeout"
        : `Check the scanner in Harbor (Interrogation Services) and the scan log${result.reportId ? ` of report ${result.reportId}` : ''}, then scan again`;
  return new ThinkubeImageError('ERR_SCAN_GATE', result.message, { hint, details: { scan: result } });
}

// ---- quota ----

export interface QuotaExceeded {
  /** Harbor's message (the DENIED entry when a registry error body was given). */
  message: string;
  /** Size the push tried to add, when Harbor said it. */
  addingBytes?: number;
  /** The project's usage before the push. */
  usedBytes?: number;
  /** The project's storage limit. */
  limitBytes?: number;
}

const UNITS: Record<string, number> = {
  b: 1, byte: 1, bytes: 1,
  kb: 1e3, mb: 1e6, gb: 1e9, tb: 1e12, pb: 1e15,
  kib: 2 ** 10, mib: 2 ** 20, gib: 2 ** 30, tib: 2 ** 40, pib: 2 ** 50,
};
const SIZE = '([0-9]+(?:\\.[0-9]+)?)\\s*([KMGTP]i?B|B|bytes?)';

function parseSize(text: string, prefix: string): number | undefined {
  const m = new RegExp(`${prefix}\\s+${SIZE}`, 'i').exec(text);
  if (!m) return undefined;
  const factor = UNITS[(m[2] as string).toLowerCase()];
  return factor === undefined ? undefined : Math.round(Number(m[1]) * factor);
}

/**
 * Recognise Harbor's quota overflow in a push error: HTTP 403, code DENIED, "Quota exceeded when
 * processing the request of adding 25.5 MiB of storage resource, which when updated to current
 * usage of 9.8 GiB will exceed the configured upper limit of 10.0 GiB." Accepts the message, an
 * engine's "denied: ..." line or the registry's JSON error body. Undefined when it is not one.
 */
export function parseQuotaExceeded(registryErrorMessage: string | null | undefined): QuotaExceeded | undefined {
  if (typeof registryErrorMessage !== 'string' || !registryErrorMessage) return undefined;
  let text = registryErrorMessage;
  const entries = harborErrorsOf(text.trim());
  if (entries.length) {
    const denied = entries.find((e) => /quota|upper limit/i.test(e.message ?? '')) ?? entries.find((e) => e.code === 'DENIED');
    if (!denied) return undefined;
    text = denied.message ?? '';
  }
  if (!/quota exceeded|exceed the configured upper limit|exceeded quota/i.test(text)) return undefined;
  const out: QuotaExceeded = { message: text.replace(/^\s*denied:\s*/i, '').trim() };
  const adding = parseSize(text, 'adding');
  const used = parseSize(text, 'current usage of');
  const limit = parseSize(text, 'upper limit of');
  if (adding !== undefined) out.addingBytes = adding;
  if (used !== undefined) out.usedBytes = used;
  if (limit !== undefined) out.limitBytes = limit;
  return out;
}

/** Bytes in binary units with at most one decimal: 10737418240 -> "10 GiB". */
export function formatBytes(bytes: number): string {
  if (!Number.isFinite(bytes)) return String(bytes);
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let value = Math.abs(bytes);
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  const rounded = unit === 0 ? String(Math.round(value)) : value.toFixed(1).replace(/\.0$/, '');
  return `${bytes < 0 ? '-' : ''}${rounded} ${units[unit]}`;
}

/**
 * A project's storage use for messages: "project library uses 9.8 GiB of 10 GiB". Takes a
 * HarborProject (from getProject) or a raw project summary with the project name.
 */
export function describeQuota(
  source: { name?: string; quota?: Partial<HarborQuota> | { hard?: HarborResourceList; used?: HarborResourceList } | undefined } | undefined,
  projectName?: string,
): string {
  const name = projectName ?? source?.name ?? '(unknown)';
  const quota = source?.quota;
  const limit = quota?.hard?.storage;
  const used = quota?.used?.storage;
  if (typeof used !== 'number') return `project ${name}: quota and usage not readable`;
  if (typeof limit !== 'number' || limit < 0) return `project ${name} uses ${formatBytes(used)} (no storage limit)`;
  const percent = limit > 0 ? ` (${Math.round((used / limit) * 100)}%)` : '';
  return `project ${name} uses ${formatBytes(used)} of ${formatBytes(limit)}${percent}`;
}

/**
 * The error for a push Harbor refused for quota (code ERR_QUOTA_EXCEEDED), naming the project,
 * the sizes Harbor gave and, when readable, the project's quota line from describeQuota.
 */
export function quotaExceededError(exceeded: QuotaExceeded, context: { project: string; image?: string; quotaDescription?: string }): ThinkubeImageError {
  const sizes: string[] = [];
  if (exceeded.addingBytes !== undefined) sizes.push(`the push adds ${formatBytes(exceeded.addingBytes)}`);
  if (exceeded.usedBytes !== undefined) sizes.push(`${formatBytes(exceeded.usedBytes)} already used`);
  if (exceeded.limitBytes !== undefined) sizes.push(`limit ${formatBytes(exceeded.limitBytes)}`);
  const what = context.image ? `Pushing ${context.image}` : 'The push';
  const message = `${what} exceeds the storage quota of Harbor project ${context.project}${sizes.length ? `: ${sizes.join(', ')}` : ''}${context.quotaDescription ? ` (${context.quotaDescription})` : ''}`;
  return new ThinkubeImageError('ERR_QUOTA_EXCEEDED', message, {
    hint: `Raise the quota of project ${context.project} in Harbor (Projects > ${context.project} > Summary), or delete unused artifacts and run garbage collection`,
    details: { project: context.project, image: context.image, ...exceeded },
  });
}
