// The client side of the engine: forks the worker process, sends typed requests, turns events
// into promise settlements and listener calls. A crashed or killed worker rejects every pending
// job ("engine stopped: …") and the next run starts a fresh one, so callers never hang. The
// worker's stdout/stderr (native onnxruntime output) are piped and become log events.
import {fork, type ChildProcess} from 'node:child_process';
import {existsSync} from 'node:fs';
import path from 'node:path';
import {createInterface} from 'node:readline';
import {fileURLToPath} from 'node:url';
import {CancelledError, deserializeError, type Device, type DevicePreference, type EngineEvent, type EngineRequest, type JobKind, type JobParams, type JobResult} from './protocol.js';

export type ProgressEvent = Extract<EngineEvent, {type: 'progress'}>;

export type RunHandlers = {
	onProgress?: (progress: ProgressEvent) => void;
};

export type EngineClientOptions = {
	device?: DevicePreference;
	/** How long a cancelled job may keep the worker busy before it is killed and restarted (ms). */
	cancelGraceMs?: number;
	/** Overrides the worker entry (tests). */
	workerPath?: string;
};

type PendingJob = {
	jobId: string;
	kind: JobKind;
	params: unknown;
	handlers: RunHandlers;
	resolve: (value: unknown) => void;
	reject: (reason: unknown) => void;
	/** The child the job was sent to. */
	child: ChildProcess;
	cancelTimer?: NodeJS.Timeout;
};

type WorkerEntry = {modulePath: string; execArgv: string[]};

/** The worker next to this module: built JS, or the TypeScript source under tsx. */
export function workerEntry(moduleUrl = import.meta.url): WorkerEntry {
	const here = path.dirname(fileURLToPath(moduleUrl));
	if (moduleUrl.endsWith('.ts')) {
		let tsx = 'tsx';
		try {
			tsx = import.meta.resolve('tsx');
		} catch {
			// Fall back to the bare specifier, resolved from the working directory.
		}

		return {modulePath: path.join(here, 'worker.ts'), execArgv: ['--import', tsx]};
	}

	// tsc's build has the worker beside this module (build/engine/); the CLI bundle
	// (build/bundle/, scripts/bundle.mjs) forks that same compiled worker one folder over.
	const beside = path.join(here, 'worker.js');
	const fromBundle = path.join(here, '..', 'engine', 'worker.js');
	return {modulePath: existsSync(beside) || !existsSync(fromBundle) ? beside : fromBundle, execArgv: []};
}

export class EngineClient {
	static start(options: EngineClientOptions = {}): EngineClient {
		const client = new EngineClient(options);
		client.ensureWorker();
		return client;
	}

	private readonly options: EngineClientOptions;
	private child: ChildProcess | undefined;
	private readonly pending = new Map<string, PendingJob>();
	private readonly listeners = new Set<(event: EngineEvent) => void>();
	private idleWaiters: Array<() => void> = [];
	private ready: Promise<{device: Device; detail: string}> | undefined;
	private resolveReady: ((value: {device: Device; detail: string}) => void) | undefined;
	private rejectReady: ((reason: unknown) => void) | undefined;
	private nextId = 1;
	private closed = false;

	private constructor(options: EngineClientOptions) {
		this.options = options;
	}

	run<K extends JobKind>(kind: K, params: JobParams<K>, handlers: RunHandlers = {}): {jobId: string; promise: Promise<JobResult<K>>} {
		const jobId = `${kind}-${this.nextId++}`;
		const promise = new Promise<JobResult<K>>((resolve, reject) => {
			if (this.closed) {
				reject(new Error('engine client is closed'));
				return;
			}

			const child = this.ensureWorker();
			const job: PendingJob = {jobId, kind, params, handlers, resolve: resolve as (value: unknown) => void, reject, child};
			this.pending.set(jobId, job);
			this.refWorker();
			this.send(child, {type: 'run', jobId, kind, params});
		});
		return {jobId, promise};
	}

	/** Asks the engine to cancel; the promise rejects with CancelledError. A worker stuck in native code is restarted after a grace period. */
	cancel(jobId: string): void {
		const job = this.pending.get(jobId);
		if (!job || job.cancelTimer) {
			return;
		}

		this.send(job.child, {type: 'cancel', jobId});
		job.cancelTimer = setTimeout(() => {
			if (this.pending.get(jobId) === job) {
				this.emit({type: 'log', level: 'warn', message: `job ${jobId} did not stop within ${this.cancelGraceMs()} ms; restarting the engine`});
				this.settle(job, 'cancelled');
				this.restartWorker(job.child);
			}
		}, this.cancelGraceMs());
	}

	onEvent(listener: (event: EngineEvent) => void): () => void {
		this.listeners.add(listener);
		return () => {
			this.listeners.delete(listener);
		};
	}

	/** Resolves once no job of this client is pending. */
	async idle(): Promise<void> {
		if (this.pending.size === 0) {
			return;
		}

		return new Promise(resolve => {
			this.idleWaiters.push(resolve);
		});
	}

	/** The device the engine runs on; rejects when the requested device is unavailable. */
	async device(): Promise<{device: Device; detail: string}> {
		// After a crash the next call starts a fresh worker, as the next run would.
		if (!this.child && !this.closed) {
			this.ensureWorker();
		}

		if (!this.ready) {
			throw new Error('engine client is closed');
		}

		return this.ready;
	}

	/** Process id of the current worker, if one runs (diagnostics and tests). */
	workerPid(): number | undefined {
		return this.child?.pid;
	}

	async close(): Promise<void> {
		this.closed = true;
		const child = this.child;
		this.child = undefined;
		for (const job of [...this.pending.values()]) {
			this.settle(job, new Error('engine client closed'));
		}

		if (!child || child.exitCode !== null || child.signalCode !== null) {
			return;
		}

		await new Promise<void>(resolve => {
			const timer = setTimeout(() => {
				child.kill('SIGKILL');
			}, 2000);
			child.once('exit', () => {
				clearTimeout(timer);
				resolve();
			});
			if (!this.send(child, {type: 'shutdown'})) {
				child.kill('SIGKILL');
			}
		});
	}

	private cancelGraceMs(): number {
		return this.options.cancelGraceMs ?? 3000;
	}

	private ensureWorker(): ChildProcess {
		if (this.child) {
			return this.child;
		}

		const entry = this.options.workerPath ? {modulePath: this.options.workerPath, execArgv: workerEntry().execArgv} : workerEntry();
		const child = fork(entry.modulePath, ['--device', this.options.device ?? 'auto'], {
			execArgv: entry.execArgv,
			stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
			serialization: 'advanced',
		});
		this.child = child;
		this.ready = new Promise((resolve, reject) => {
			this.resolveReady = resolve;
			this.rejectReady = reject;
		});
		// device() callers handle the rejection; an unobserved one must not crash the app.
		this.ready.catch(() => undefined);

		for (const [stream, level] of [[child.stdout, 'info'], [child.stderr, 'warn']] as const) {
			if (stream) {
				createInterface({input: stream}).on('line', line => {
					if (line.trim() !== '') {
						this.emit({type: 'log', level, message: `engine: ${line}`});
					}
				});
			}
		}

		child.on('message', message => {
			if (this.child === child) {
				this.onMessage(message as EngineEvent);
			}
		});
		child.on('error', error => {
			this.emit({type: 'log', level: 'error', message: `engine process error: ${error.message}`});
			this.onExit(child, null, null, error.message);
		});
		child.on('exit', (code, signal) => {
			this.onExit(child, code, signal);
		});
		this.refWorker();
		return child;
	}

	private onMessage(event: EngineEvent): void {
		switch (event.type) {
			case 'ready': {
				if (event.error) {
					this.rejectReady?.(deserializeError(event.error));
				} else {
					this.resolveReady?.({device: event.device, detail: event.detail});
				}

				if (this.pending.size === 0) {
					this.unrefWorker();
				}

				break;
			}

			case 'progress': {
				this.pending.get(event.jobId)?.handlers.onProgress?.(event);
				break;
			}

			case 'result': {
				const job = this.pending.get(event.jobId);
				if (job) {
					this.settle(job, {result: event.result});
				}

				break;
			}

			case 'error': {
				const job = this.pending.get(event.jobId);
				if (job) {
					this.settle(job, deserializeError(event.error));
				}

				break;
			}

			case 'cancelled': {
				const job = this.pending.get(event.jobId);
				if (job) {
					this.settle(job, 'cancelled');
				}

				break;
			}

			case 'log': {
				break;
			}
		}

		this.emit(event);
	}

	private settle(job: PendingJob, outcome: {result: unknown} | Error | 'cancelled'): void {
		if (this.pending.get(job.jobId) !== job) {
			return;
		}

		this.pending.delete(job.jobId);
		clearTimeout(job.cancelTimer);
		if (outcome === 'cancelled') {
			job.reject(new CancelledError());
		} else if (outcome instanceof Error) {
			job.reject(outcome);
		} else {
			job.resolve(outcome.result);
		}

		if (this.pending.size === 0) {
			this.unrefWorker();
			const waiters = this.idleWaiters;
			this.idleWaiters = [];
			for (const resolve of waiters) {
				resolve();
			}
		}
	}

	private onExit(child: ChildProcess, code: number | null, signal: NodeJS.Signals | null, detail?: string): void {
		if (this.child === child) {
			this.child = undefined;
		}

		const why = detail ?? (signal ? `signal ${signal}` : `exit code ${code ?? '?'}`);
		const error = Object.assign(new Error(`engine stopped: ${why}`), {reason: `engine stopped: ${why}`});
		this.rejectReady?.(error);
		for (const job of [...this.pending.values()]) {
			if (job.child !== child) {
				continue;
			}

			// Tell listeners too, so a reducer tracking job ids shows the error instead of spinning.
			this.emit({type: 'error', jobId: job.jobId, error: {name: 'Error', message: error.message, reason: error.reason}});
			this.settle(job, error);
		}
	}

	/** Kills a worker stuck in native code; jobs other than the cancelled one are re-sent to a fresh worker. */
	private restartWorker(child: ChildProcess): void {
		if (this.child === child) {
			this.child = undefined;
		}

		const survivors = [...this.pending.values()].filter(job => job.child === child);
		child.removeAllListeners('exit');
		child.on('exit', () => undefined);
		child.kill('SIGKILL');
		if (survivors.length === 0 || this.closed) {
			for (const job of survivors) {
				this.settle(job, new Error('engine stopped: restarted'));
			}

			return;
		}

		const next = this.ensureWorker();
		for (const job of survivors) {
			job.child = next;
			this.send(next, {type: 'run', jobId: job.jobId, kind: job.kind, params: job.params});
		}
	}

	private send(child: ChildProcess, request: EngineRequest): boolean {
		if (!child.connected) {
			return false;
		}

		try {
			child.send(request);
			return true;
		} catch {
			return false;
		}
	}

	private emit(event: EngineEvent): void {
		for (const listener of [...this.listeners]) {
			try {
				listener(event);
			} catch {
				// A faulty listener must not break event delivery to the others.
			}
		}
	}

	// While no job is pending the worker must not keep the host process alive.
	private refWorker(): void {
		setRef(this.child, true);
	}

	private unrefWorker(): void {
		setRef(this.child, false);
	}
}

type Refable = {ref?: () => void; unref?: () => void};

function setRef(child: ChildProcess | undefined, on: boolean): void {
	if (!child) {
		return;
	}

	const handles: Array<Refable | null | undefined> = [child, child.channel as Refable | undefined, child.stdout as Refable | null, child.stderr as Refable | null];
	for (const handle of handles) {
		if (on) {
			handle?.ref?.();
		} else {
			handle?.unref?.();
		}
	}
}
