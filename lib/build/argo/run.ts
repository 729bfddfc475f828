/**
 * A submitted Workflow as the run sees it: follows it to its end, streams each task pod's log
 * into the progress events a local build emits (build steps, log lines, each line prefixed with
 * its task), and settles one outcome per task: the digest its step wrote, or the same BuildError
 * a local build gives (the failing Dockerfile step and the log tail). Stopping it (the run was
 * cancelled) is `argo stop`: the controller kills the pods and starts nothing more.
 */
import { BuildError, ThinkubeImageError } from '../../core/errors.js';
import { cleanLine, emit, LogTail, type OperationControls } from '../../core/progress.js';
import { Redactor } from '../../core/redact.js';
import { STEP_LINE } from '../build.js';
import { nodeFinished, taskPodName, workflowFinished, type WorkflowClient, type WorkflowNodeStatus, type WorkflowObject } from '../../kube/workflows.js';

export interface TaskOutcome {
  task: string;
  /** The digest the step wrote (its output parameter). */
  digest: string;
  /** The Kubernetes node it ran on. */
  node?: string;
  /** Its log's last lines (what was streamed). */
  logTail: string[];
  /** Blobs the push sent (buildah's "Copying blob" lines, less those the registry had). */
  blobsPushed: number;
}

interface TaskState {
  settled: boolean;
  resolve(outcome: TaskOutcome): void;
  reject(error: unknown): void;
  promise: Promise<TaskOutcome>;
  tail: LogTail;
  step?: string;
  blobsPushed: number;
  log?: Promise<void>;
  settling?: Promise<void>;
  stopLog: AbortController;
}

/** Time a finished task's log may take to end after the controller said the task is over. */
const LOG_GRACE_MS = 5000;

export class WorkflowRun {
  readonly name: string;
  readonly namespace: string;
  readonly uid: string;
  /** Set when the run stopped the Workflow (cancelled). */
  stopped = false;
  /** The last version seen. */
  latest: WorkflowObject;
  /** Resolves with the final Workflow (or rejects when it could not be followed). */
  readonly done: Promise<WorkflowObject>;
  readonly #client: WorkflowClient;
  readonly #tasks = new Map<string, TaskState>();
  readonly #controls: OperationControls;
  readonly #redactor: Redactor;

  constructor(client: WorkflowClient, created: WorkflowObject, tasks: string[], controls: OperationControls, redactor = new Redactor()) {
    this.#client = client;
    this.#controls = controls;
    this.#redactor = redactor;
    this.latest = created;
    this.name = created.metadata.name as string;
    this.namespace = client.namespace;
    this.uid = created.metadata.uid as string;
    for (const task of tasks) {
      let resolve!: (o: TaskOutcome) => void;
      let reject!: (e: unknown) => void;
      const promise = new Promise<TaskOutcome>((res, rej) => {
        resolve = res;
        reject = rej;
      });
      // Waited for or not, a task's failure must not be an unhandled rejection.
      promise.catch(() => undefined);
      const state: TaskState = { settled: false, promise, tail: new LogTail(100), blobsPushed: 0, stopLog: new AbortController(), resolve: (o) => ((state.settled = true), resolve(o)), reject: (e) => ((state.settled = true), reject(e)) };
      this.#tasks.set(task, state);
    }
    this.done = this.#follow();
    this.done.catch(() => undefined);
  }

  /** The last version seen has a final phase. */
  get finished(): boolean {
    return workflowFinished(this.latest);
  }

  /** The outcome of a task of this Workflow. */
  wait(task: string): Promise<TaskOutcome> {
    const state = this.#tasks.get(task);
    if (!state) return Promise.reject(new ThinkubeImageError('ERR_WORKFLOW', `Workflow ${this.namespace}/${this.name} has no task ${task}`, { hint: 'Report this: the run waits only for tasks it rendered' }));
    return state.promise;
  }

  /** Stop the Workflow (once); every task not settled yet fails as cancelled. */
  async stop(): Promise<void> {
    if (this.stopped || this.finished) return;
    this.stopped = true;
    emit(this.#controls, { type: 'warning', message: `Stopping Workflow ${this.namespace}/${this.name}: the run was cancelled` });
    const cancelled = new ThinkubeImageError('ERR_ABORTED', `Cancelled: Workflow ${this.namespace}/${this.name} was stopped`, { hint: 'Run again: builds that finished are found in the registry' });
    for (const state of this.#tasks.values()) {
      state.stopLog.abort();
      if (!state.settled) state.reject(cancelled);
    }
    await this.#client.stop(this.name);
  }

  async #follow(): Promise<WorkflowObject> {
    try {
      this.#update(this.latest);
      const final = await this.#client.follow(this.latest, {
        onChange: (workflow) => this.#update(workflow),
        onResume: (reason) => emit(this.#controls, { type: 'info', message: `Workflow ${this.name}: ${reason}` }),
      });
      this.#update(final);
      // Tasks the Workflow ended without running.
      const phase = final.status?.phase ?? 'unknown';
      for (const [task, state] of this.#tasks) {
        if (state.settled) continue;
        const node = this.#nodeOf(final, task);
        if (node && nodeFinished(node)) state.settling ??= this.#settle(task, state, node);
        await state.settling;
        if (!state.settled) {
          state.reject(new ThinkubeImageError('ERR_WORKFLOW', `Workflow ${this.namespace}/${this.name} ended ${phase}${final.status?.message ? ` (${final.status.message})` : ''} without running task ${task}`, {
            hint: `Read the Workflow: kubectl -n ${this.namespace} get workflow ${this.name} -o yaml (or the Argo UI)`,
            details: { workflow: this.name, task, phase },
          }));
        }
      }
      return final;
    } catch (error) {
      const reason = error instanceof ThinkubeImageError ? error : new ThinkubeImageError('ERR_WORKFLOW', String(error));
      const lost = new ThinkubeImageError(reason.code, `${reason.message}; Workflow ${this.namespace}/${this.name} could not be followed${this.stopped ? '' : ' and may still be running in the cluster'}`, {
        hint: this.stopped || reason.code === 'ERR_ABORTED' ? reason.hint : `${reason.hint ?? ''}${reason.hint ? '. ' : ''}Stop it with argo stop -n ${this.namespace} ${this.name} if it should not go on`,
        cause: reason,
        details: { ...reason.details, workflow: this.name, namespace: this.namespace },
      });
      for (const state of this.#tasks.values()) {
        state.stopLog.abort();
        if (!state.settled) state.reject(lost);
      }
      throw lost;
    }
  }

  #nodeOf(workflow: WorkflowObject, task: string): WorkflowNodeStatus | undefined {
    return Object.values(workflow.status?.nodes ?? {}).find((n) => n.name === `${this.name}.${task}` || (n.displayName === task && n.type === 'Pod'));
  }

  #update(workflow: WorkflowObject): void {
    this.latest = workflow;
    for (const [task, state] of this.#tasks) {
      if (state.settled) continue;
      const node = this.#nodeOf(workflow, task);
      if (!node) continue;
      if (!state.log && (node.phase === 'Running' || (nodeFinished(node) && node.type === 'Pod' && node.phase !== 'Omitted' && node.phase !== 'Skipped'))) {
        emit(this.#controls, { type: 'info', message: `${task}: running on ${node.hostNodeName ?? 'the cluster'} (pod ${taskPodName(this.name, node)})` });
        state.log = this.#streamLog(task, state, node);
      }
      if (nodeFinished(node)) state.settling ??= this.#settle(task, state, node);
    }
  }

  async #streamLog(task: string, state: TaskState, node: WorkflowNodeStatus): Promise<void> {
    const pod = taskPodName(this.name, node);
    const onLine = (raw: string): void => {
      const line = this.#redactor.redact(cleanLine(raw));
      if (!line) return;
      state.tail.push(line);
      const step = STEP_LINE.exec(line);
      if (step) {
        state.step = line;
        emit(this.#controls, { type: 'build-step', step: Number(step[1]), total: Number(step[2]), instruction: `${step[3] ?? ''} (${task})` });
        return;
      }
      if (/^Copying blob /.test(line) && !/skipped|already exists/.test(line)) state.blobsPushed += 1;
      emit(this.#controls, { type: 'build-log', line: `[${task}] ${line}` });
    };
    // The pod may not be there yet when the node says Running (404), or its container not
    // started (400 "waiting to start"): try a few times.
    for (let attempt = 0; attempt < 8 && !state.stopLog.signal.aborted; attempt++) {
      try {
        await this.#client.log(pod, onLine, { signal: state.stopLog.signal });
        return;
      } catch (error) {
        const status = (error as ThinkubeImageError).details?.status;
        if (status !== 404 && status !== 400) {
          emit(this.#controls, { type: 'warning', message: `${task}: its log cannot be read (${(error as Error).message})` });
          return;
        }
        await new Promise((resolve) => setTimeout(resolve, 500 * (attempt + 1)));
      }
    }
  }

  /** A finished node: wait for its log to end (a little), then resolve or reject. */
  async #settle(task: string, state: TaskState, node: WorkflowNodeStatus): Promise<void> {
    if (state.settled) return;
    if (state.log) {
      const grace = setTimeout(() => state.stopLog.abort(), LOG_GRACE_MS);
      await state.log;
      clearTimeout(grace);
    }
    if (state.settled) return;
    const where = `task ${task} of Workflow ${this.namespace}/${this.name}`;
    if (node.phase === 'Succeeded') {
      const digest = node.outputs?.parameters?.find((p) => p.name === 'digest')?.value?.trim();
      if (!digest || !/^sha256:[0-9a-f]{64}$/.test(digest)) {
        state.reject(new ThinkubeImageError('ERR_WORKFLOW', `${where} succeeded without a digest output (got ${JSON.stringify(digest ?? null)})`, { hint: 'The build step writes the digest with buildah push --digestfile: check the builder image', details: { workflow: this.name, task } }));
        return;
      }
      state.resolve({ task, digest, node: node.hostNodeName, logTail: state.tail.last(30), blobsPushed: state.blobsPushed });
      return;
    }
    if (node.phase === 'Omitted' || node.phase === 'Skipped') {
      state.reject(new ThinkubeImageError('ERR_WORKFLOW', `${where} did not run (${node.phase}): a task it depends on failed`, { hint: 'See the error of the task it builds on', details: { workflow: this.name, task } }));
      return;
    }
    if (this.stopped) return;
    let tail = state.tail.last(30);
    if (tail.length === 0) {
      // Never streamed (the pod ended before the watch saw it run): its last lines, if still there.
      const lines: string[] = [];
      try {
        await this.#client.log(taskPodName(this.name, node), (l) => lines.push(this.#redactor.redact(cleanLine(l))), { follow: false, tailLines: 30 });
      } catch {
        // Gone (pod GC): the node's message is all there is.
      }
      tail = lines.filter(Boolean);
      state.step ??= [...tail].reverse().find((l) => STEP_LINE.test(l));
    }
    state.reject(new BuildError(`Build failed in ${where} on ${node.hostNodeName ?? 'the cluster'}: ${node.message ?? node.phase}${state.step ? ` at ${state.step}` : ''}`, {
      step: state.step,
      logTail: tail,
      hint: `Read the log tail; the pod's whole log: kubectl -n ${this.namespace} logs ${taskPodName(this.name, node)} -c main (failed pods are kept until the Workflow's TTL)`,
    }));
  }
}
