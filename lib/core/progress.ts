/**
 * Typed progress events and the plumbing shared by long operations: newline-delimited JSON
 * parsing of engine streams, a bounded log tail, and abort handling.
 */
import type { Readable } from 'node:stream';

export type ImageEvent =
  | { type: 'build-context'; files: number; bytes: number; context: string }
  | { type: 'build-step'; step: number; total: number; instruction: string }
  | { type: 'build-log'; line: string }
  | { type: 'build-status'; status: string; id?: string; progress?: string }
  | { type: 'build-image'; imageId: string }
  | { type: 'push-layer'; reference: string; layer: string; status: string; current?: number; total?: number }
  | { type: 'push-digest'; reference: string; digest: string; size: number }
  | { type: 'retry'; operation: string; attempt: number; delayMs: number; reason: string }
  | { type: 'warning'; message: string }
  | { type: 'info'; message: string };

export interface OperationControls {
  /** Cancels the operation; a build is cancelled on the engine too. */
  signal?: AbortSignal;
  /** Receives typed progress events as they happen. */
  onEvent?: (event: ImageEvent) => void;
}

export function emit(controls: OperationControls | undefined, event: ImageEvent): void {
  try {
    controls?.onEvent?.(event);
  } catch {
    // A failing listener must not break the operation it observes.
  }
}

/** Keeps the last `size` lines: memory stays bounded however long the log is. */
export class LogTail {
  private readonly lines: string[] = [];
  constructor(private readonly size = 100) {}
  push(line: string): void {
    this.lines.push(line);
    if (this.lines.length > this.size) this.lines.shift();
  }
  last(n = this.size): string[] {
    return this.lines.slice(-n);
  }
}

/**
 * Read a newline-delimited JSON stream object by object without holding more than one line.
 * Lines that are not JSON are handed over as `{ stream: line }` (some engines interleave text).
 */
export async function* readJsonLines(stream: Readable): AsyncGenerator<Record<string, unknown>> {
  let pending = '';
  for await (const chunk of stream) {
    pending += typeof chunk === 'string' ? chunk : (chunk as Buffer).toString('utf8');
    let index: number;
    while ((index = pending.indexOf('\n')) >= 0) {
      const line = pending.slice(0, index).trim();
      pending = pending.slice(index + 1);
      if (line) yield parseLine(line);
    }
  }
  const rest = pending.trim();
  if (rest) yield parseLine(rest);
}

function parseLine(line: string): Record<string, unknown> {
  try {
    const value = JSON.parse(line) as unknown;
    if (value && typeof value === 'object' && !Array.isArray(value)) return value as Record<string, unknown>;
  } catch {
    // fall through
  }
  return { stream: `${line}\n` };
}

/** Strip ANSI escapes and carriage-return progress redraws from engine output. */
export function cleanLine(line: string): string {
  // eslint-disable-next-line no-control-regex
  return line.replace(/\u001b\[[0-9;?]*[A-Za-z]/g, '').replace(/.*\r(?!$)/, '').trimEnd();
}
