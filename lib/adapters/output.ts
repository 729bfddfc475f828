/**
 * Standard output and error of a command without process.stdout and process.stderr where they are
 * not needed. Creating the first of those streams loads Node's stream and net modules and opens the
 * descriptor as a pipe handle: about 8 ms of a process that takes 80 ms to start (`--help`, an
 * Ansible module failing its options, a no-op run). When the descriptor is a pipe or a file, the
 * text is written with write(2) instead; a terminal (or another character device, such as
 * /dev/null) gets the stream, which knows the terminal's width. A descriptor that would block (a
 * pipe another process made non-blocking) hands what is left, and everything after, to the stream,
 * so the order of the output is kept.
 */
import { fstatSync, writeSync } from 'node:fs';
import { errorCodeOf } from '../core/errors.js';

export type OutputFd = 1 | 2;

/** What the progress display writes to: a stream, or a descriptor written directly. */
export interface TextSink {
  isTTY?: boolean;
  columns?: number;
  write(text: string): unknown;
}

const useStream = new Map<OutputFd, boolean>();
const closed = new Set<OutputFd>();

function streamOf(fd: OutputFd): NodeJS.WriteStream {
  return fd === 1 ? process.stdout : process.stderr;
}

/** Whether `fd` goes through its stream: a terminal or other character device, or a descriptor that would block. */
function viaStream(fd: OutputFd): boolean {
  let answer = useStream.get(fd);
  if (answer === undefined) {
    try {
      answer = fstatSync(fd).isCharacterDevice();
    } catch {
      answer = true; // not a descriptor fstat can tell about: let Node decide
    }
    useStream.set(fd, answer);
  }
  return answer;
}

/** Writes `text` to standard output (1) or standard error (2), whole. */
export function writeOutput(fd: OutputFd, text: string): void {
  if (closed.has(fd) || text.length === 0) return;
  if (viaStream(fd)) {
    streamOf(fd).write(text);
    return;
  }
  let rest = Buffer.from(text, 'utf8');
  try {
    while (rest.length > 0) rest = rest.subarray(writeSync(fd, rest));
  } catch (error) {
    // The reader went away: like a closed terminal, nothing more is shown (never a crash).
    if (errorCodeOf(error) === 'EPIPE') {
      closed.add(fd);
      return;
    }
    // EAGAIN (a non-blocking pipe that is full) and the rest: the stream waits and retries.
    useStream.set(fd, true);
    streamOf(fd).write(rest);
  }
}

/** Standard error as the progress display's sink (the stream itself on a terminal). */
export function stderrSink(): TextSink {
  return viaStream(2) ? process.stderr : { isTTY: false, write: (text: string) => writeOutput(2, text) };
}

/** Columns of the terminal on standard error, undefined when it is not one. */
export function stderrColumns(): number | undefined {
  return viaStream(2) ? process.stderr.columns : undefined;
}
