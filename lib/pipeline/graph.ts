/**
 * Run tasks that depend on each other as soon as their dependencies are done, with a limit on
 * how many hold a slot at once: independent images build in parallel, an image waits for the
 * images it builds on (the dependency edges themselves, not waves: an image never waits for an
 * unrelated slow one).
 */
import { ThinkubeImageError } from '../core/errors.js';

export interface GraphTask<T> {
  id: string;
  /** Ids this task waits for; ids that are not tasks of the graph are ignored. */
  dependsOn?: string[];
  /** Takes no slot of the concurrency limit (light work beside the limited kind, e.g. registry reads). */
  unlimited?: boolean;
  run(signal: AbortSignal | undefined): Promise<T>;
}

export type TaskStatus = 'done' | 'failed' | 'skipped';

export interface TaskRecord<T> {
  id: string;
  status: TaskStatus;
  value?: T;
  error?: unknown;
  /** Why it was skipped. */
  reason?: string;
  /** Date.now() when it started and ended (undefined when it never ran). */
  startedAt?: number;
  endedAt?: number;
}

export interface GraphOptions<T> {
  /** Tasks running at the same time (default: no limit beyond the dependencies). */
  concurrency?: number;
  signal?: AbortSignal;
  onStart?(id: string): void;
  onEnd?(record: TaskRecord<T>): void;
  /**
   * Whether a finished task lets its dependants run. Default: it did not throw. A task whose
   * dependency does not allow it is skipped, naming that dependency.
   */
  allowsDependants?(record: TaskRecord<T>): boolean;
}

/** Ids in a dependency cycle, or [] (each cycle once, in the tasks' order). */
function findCycle(tasks: Array<GraphTask<unknown>>): string[] {
  const byId = new Map(tasks.map((t) => [t.id, t]));
  const state = new Map<string, 'visiting' | 'done'>();
  const stack: string[] = [];
  const visit = (id: string): string[] => {
    state.set(id, 'visiting');
    stack.push(id);
    for (const dep of byId.get(id)?.dependsOn ?? []) {
      if (!byId.has(dep)) continue;
      if (state.get(dep) === 'visiting') return [...stack.slice(stack.indexOf(dep)), dep];
      if (!state.has(dep)) {
        const cycle = visit(dep);
        if (cycle.length) return cycle;
      }
    }
    stack.pop();
    state.set(id, 'done');
    return [];
  };
  for (const task of tasks) {
    if (state.has(task.id)) continue;
    const cycle = visit(task.id);
    if (cycle.length) return cycle;
  }
  return [];
}

/**
 * Run every task once its dependencies finished, at most `concurrency` at a time, tasks that are
 * ready in the order given (give them in a topological order for a stable schedule). Never throws
 * for a failing task: its record says failed, and its dependants are skipped. Resolves when every
 * task has a record; after an abort nothing new starts and what did not start is skipped.
 */
export async function runGraph<T>(tasks: Array<GraphTask<T>>, options: GraphOptions<T> = {}): Promise<Map<string, TaskRecord<T>>> {
  const ids = new Set<string>();
  for (const task of tasks) {
    if (ids.has(task.id)) throw new ThinkubeImageError('ERR_INVALID_OPTIONS', `Task "${task.id}" is given twice`, { hint: 'Give every task a unique id' });
    ids.add(task.id);
  }
  const cycle = findCycle(tasks as Array<GraphTask<unknown>>);
  if (cycle.length > 0) {
    throw new ThinkubeImageError('ERR_INVALID_OPTIONS', `Tasks depend on each other in a cycle: ${cycle.join(' -> ')}`, {
      hint: 'Remove one of the dependencies named',
      details: { cycle },
    });
  }
  const limit = options.concurrency === undefined ? Infinity : Math.max(1, Math.floor(options.concurrency));
  const allows = options.allowsDependants ?? ((record: TaskRecord<T>) => record.status === 'done');
  const records = new Map<string, TaskRecord<T>>();
  const pending = [...tasks];
  let running = 0;
  let active = 0;

  return new Promise((resolve) => {
    const finish = (record: TaskRecord<T>): void => {
      records.set(record.id, record);
      try {
        options.onEnd?.(record);
      } catch {
        // an observer must not break the schedule
      }
    };
    const pump = (): void => {
      for (let i = 0; i < pending.length; ) {
        const task = pending[i] as GraphTask<T>;
        const deps = (task.dependsOn ?? []).filter((d) => ids.has(d) && d !== task.id);
        if (options.signal?.aborted) {
          pending.splice(i, 1);
          finish({ id: task.id, status: 'skipped', reason: 'cancelled before it started' });
          continue;
        }
        const blocked = deps.filter((d) => records.has(d) && !allows(records.get(d) as TaskRecord<T>));
        if (blocked.length > 0) {
          pending.splice(i, 1);
          finish({ id: task.id, status: 'skipped', reason: `depends on ${blocked.join(', ')}, which did not succeed` });
          i = 0; // its own dependants may now be decidable
          continue;
        }
        if ((!task.unlimited && running >= limit) || !deps.every((d) => records.has(d))) {
          i++;
          continue;
        }
        pending.splice(i, 1);
        if (!task.unlimited) running++;
        active++;
        const startedAt = Date.now();
        try {
          options.onStart?.(task.id);
        } catch {
          // ignore observer failures
        }
        let promise: Promise<T>;
        try {
          promise = task.run(options.signal);
        } catch (error) {
          promise = Promise.reject(error);
        }
        promise.then(
          (value) => ({ id: task.id, status: 'done' as const, value, startedAt, endedAt: Date.now() }),
          (error: unknown) => ({ id: task.id, status: 'failed' as const, error, startedAt, endedAt: Date.now() }),
        ).then((record) => {
          if (!task.unlimited) running--;
          active--;
          finish(record);
          pump();
        });
      }
      if (pending.length === 0 && active === 0) resolve(records);
    };
    pump();
  });
}

