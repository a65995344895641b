// The engine server: a plain class that receives requests and posts events through the function
// it was given, so tests drive it in-process and the worker shim connects it to IPC. Jobs run one
// at a time (the heavy ones saturate both cores anyway) from a FIFO queue; each has an
// AbortController; progress is throttled per job; a cancelled job's late result is dropped.
import {resolveDevice as defaultResolveDevice, type DeviceChoice} from './device.js';
import type {JobContext} from './job-context.js';
import {CancelledError, serializeError, type Device, type DevicePreference, type EngineEvent, type EngineRequest, type JobKind, type LogLevel, type SerializedError} from './protocol.js';
import {getJobHandler} from './registry.js';

export type EngineServerOptions = {
	device?: DevicePreference;
	/** Injected in tests; defaults to the file checks of device.ts. */
	resolveDevice?: (preference: DevicePreference) => DeviceChoice;
	/** Minimum milliseconds between two progress events of one job (default 50: ≤ 20/s). */
	progressIntervalMs?: number;
	/** Called after a 'shutdown' request once running jobs have been cancelled. */
	onShutdown?: () => void;
	now?: () => number;
};

type PendingProgress = {done: number; total: number; label?: string; bytesDone?: number};

type Job = {
	jobId: string;
	kind: JobKind;
	params: unknown;
	controller: AbortController;
	/** Set once 'cancelled' was posted: later results and errors are dropped. */
	settled: boolean;
	startedAt: number;
	lastSentAt: number;
	lastSent?: PendingProgress;
	pending?: PendingProgress;
};

export class EngineServer {
	readonly device: Device;
	readonly deviceDetail: string;
	private readonly deviceError: SerializedError | undefined;
	private readonly post: (event: EngineEvent) => void;
	private readonly progressIntervalMs: number;
	private readonly now: () => number;
	private readonly onShutdown: (() => void) | undefined;
	private readonly queue: Job[] = [];
	private readonly jobs = new Map<string, Job>();
	private running: Job | undefined;
	private idleWaiters: Array<() => void> = [];
	private readonly cache = new Map<string, unknown>();
	private shuttingDown = false;

	constructor(post: (event: EngineEvent) => void, options: EngineServerOptions = {}) {
		this.post = post;
		this.progressIntervalMs = options.progressIntervalMs ?? 50;
		this.now = options.now ?? (() => performance.now());
		this.onShutdown = options.onShutdown;
		let choice: DeviceChoice;
		try {
			choice = (options.resolveDevice ?? defaultResolveDevice)(options.device ?? 'auto');
		} catch (error) {
			this.deviceError = serializeError(error);
			choice = {device: 'cpu', detail: this.deviceError.reason};
		}

		this.device = choice.device;
		this.deviceDetail = choice.detail;
		this.send({type: 'ready', device: this.device, detail: this.deviceDetail, ...(this.deviceError ? {error: this.deviceError} : {})});
	}

	handle(request: EngineRequest): void {
		switch (request.type) {
			case 'run': {
				this.enqueue(request.jobId, request.kind, request.params);
				break;
			}

			case 'cancel': {
				this.cancel(request.jobId);
				break;
			}

			case 'shutdown': {
				this.shutdown();
				break;
			}

			default: {
				this.log('warn', `unknown request ${JSON.stringify((request as {type?: unknown}).type)}`);
			}
		}
	}

	/** Resolves once no job is queued or running. */
	async idle(): Promise<void> {
		if (!this.running && this.queue.length === 0) {
			return;
		}

		return new Promise(resolve => {
			this.idleWaiters.push(resolve);
		});
	}

	private send(event: EngineEvent): void {
		try {
			this.post(event);
		} catch {
			// A closed channel must not take the engine down; the client notices the exit.
		}
	}

	private log(level: LogLevel, message: string, jobId?: string): void {
		this.send({type: 'log', level, message, ...(jobId === undefined ? {} : {jobId})});
	}

	private enqueue(jobId: string, kind: JobKind, params: unknown): void {
		if (this.shuttingDown) {
			this.fail(jobId, new Error('engine is shutting down'));
			return;
		}

		if (this.jobs.has(jobId)) {
			this.fail(jobId, new Error(`duplicate job id ${jobId}`));
			return;
		}

		if (this.deviceError) {
			this.send({type: 'error', jobId, error: this.deviceError});
			return;
		}

		if (!getJobHandler(kind)) {
			this.fail(jobId, new Error(`unknown job kind ${JSON.stringify(kind)}`));
			return;
		}

		const job: Job = {jobId, kind, params, controller: new AbortController(), settled: false, startedAt: 0, lastSentAt: Number.NEGATIVE_INFINITY};
		this.jobs.set(jobId, job);
		this.queue.push(job);
		this.pump();
	}

	private cancel(jobId: string): void {
		const job = this.jobs.get(jobId);
		if (!job || job.settled) {
			return;
		}

		job.settled = true;
		job.controller.abort(new CancelledError());
		const queued = this.queue.indexOf(job);
		if (queued !== -1) {
			this.queue.splice(queued, 1);
			this.jobs.delete(jobId);
		}

		this.send({type: 'cancelled', jobId});
		this.checkIdle();
	}

	private shutdown(): void {
		this.shuttingDown = true;
		for (const job of [...this.jobs.values()]) {
			this.cancel(job.jobId);
		}

		void this.idle().then(() => this.onShutdown?.());
	}

	private fail(jobId: string, error: unknown): void {
		const serialized = serializeError(error);
		serialized.reason = oneLine(serialized.reason);
		this.send({type: 'error', jobId, error: serialized});
	}

	private pump(): void {
		if (this.running) {
			return;
		}

		const job = this.queue.shift();
		if (!job) {
			this.checkIdle();
			return;
		}

		this.running = job;
		void this.execute(job).finally(() => {
			this.jobs.delete(job.jobId);
			this.running = undefined;
			this.pump();
		});
	}

	private async execute(job: Job): Promise<void> {
		const handler = getJobHandler(job.kind)!;
		job.startedAt = this.now();
		const context: JobContext = {
			jobId: job.jobId,
			signal: job.controller.signal,
			progress: (done, total, label, bytesDone) => {
				this.progress(job, {done, total, label, bytesDone});
			},
			log: (level, message) => {
				this.log(level, message, job.jobId);
			},
			yield: async () => {
				await new Promise(resolve => {
					setImmediate(resolve);
				});
				if (job.controller.signal.aborted) {
					throw new CancelledError();
				}
			},
			device: this.device,
			cache: this.cache,
		};

		try {
			// Let a cancel that arrived with the run request be seen before any work starts.
			await context.yield();
			const result = await handler(job.params as never, context);
			if (job.settled) {
				return;
			}

			this.flushProgress(job);
			job.settled = true;
			this.send({type: 'result', jobId: job.jobId, kind: job.kind, result});
		} catch (error) {
			if (job.settled) {
				return;
			}

			job.settled = true;
			if (error instanceof CancelledError || job.controller.signal.aborted) {
				this.send({type: 'cancelled', jobId: job.jobId});
				return;
			}

			this.fail(job.jobId, error);
		}
	}

	private progress(job: Job, update: PendingProgress): void {
		if (job.settled) {
			return;
		}

		const now = this.now();
		const final = update.total > 0 && update.done >= update.total;
		if (final || now - job.lastSentAt >= this.progressIntervalMs) {
			this.sendProgress(job, update, now);
		} else {
			job.pending = update;
		}
	}

	/** Sends the last throttled-away update, so the final state is never lost. */
	private flushProgress(job: Job): void {
		if (job.pending) {
			this.sendProgress(job, job.pending, this.now());
		}
	}

	private sendProgress(job: Job, update: PendingProgress, now: number): void {
		job.pending = undefined;
		job.lastSentAt = now;
		job.lastSent = update;
		const seconds = Math.max((now - job.startedAt) / 1000, 1e-6);
		const fraction = update.total > 0 ? Math.min(update.done / update.total, 1) : 0;
		this.send({
			type: 'progress',
			jobId: job.jobId,
			done: update.done,
			total: update.total,
			...(update.label === undefined ? {} : {label: update.label}),
			...(update.bytesDone === undefined ? {} : {bytesPerSecond: update.bytesDone / seconds}),
			...(fraction > 0 ? {etaSeconds: seconds * (1 - fraction) / fraction} : {}),
		});
	}

	private checkIdle(): void {
		if (this.running || this.queue.length > 0) {
			return;
		}

		const waiters = this.idleWaiters;
		this.idleWaiters = [];
		for (const resolve of waiters) {
			resolve();
		}
	}
}

function oneLine(text: string): string {
	const line = text.split(/\r?\n/).find(part => part.trim() !== '') ?? text;
	return line.length > 300 ? `${line.slice(0, 299)}…` : line;
}
