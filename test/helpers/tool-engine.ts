// The dashboard's engine in-process for view tests of the tools: H4's EngineServer with every real
// job registered (decompose, resize-write, hash, meta-save, stats), driven without a child process,
// so the views show what the real jobs compute. Jobs can be counted, held back and cancelled.
import '../../source/engine/jobs/index.js';
import {CancelledError, deserializeError, type EngineEvent, type JobKind, type JobParams, type JobResult} from '../../source/engine/protocol.js';
import {EngineServer} from '../../source/engine/server.js';
import type {StatsEngine} from '../../source/hooks/stats-engine.js';
import type {JobProgress} from '../../source/state/tools-types.js';

type Pending = {resolve: (value: unknown) => void; reject: (reason: unknown) => void; onProgress: (progress: JobProgress) => void};

export type ToolEngine = StatsEngine & {
	/** Kinds of the jobs run, in order. */
	started: Array<{kind: string; params: unknown}>;
	cancelled: string[];
	/** Resolves once no job is running or queued. */
	idle: () => Promise<void>;
	/** While set, new jobs wait until `release()` is called (to see progress and cancel mid-way). */
	hold: boolean;
	release: () => void;
};

export function toolEngine(): ToolEngine {
	const pending = new Map<string, Pending>();
	let next = 1;
	let held = new Map<string, () => void>();
	const server = new EngineServer(
		(event: EngineEvent) => {
			switch (event.type) {
				case 'progress': {
					const {done, total, label, bytesPerSecond, etaSeconds} = event;
					pending.get(event.jobId)?.onProgress({done, total, label, bytesPerSecond, etaSeconds});
					break;
				}

				case 'result': {
					pending.get(event.jobId)?.resolve(event.result);
					pending.delete(event.jobId);
					break;
				}

				case 'error': {
					pending.get(event.jobId)?.reject(deserializeError(event.error));
					pending.delete(event.jobId);
					break;
				}

				case 'cancelled': {
					pending.get(event.jobId)?.reject(new CancelledError());
					pending.delete(event.jobId);
					break;
				}

				default: {
					break;
				}
			}
		},
		// Progress throttled as in the real engine (≤ 20 events/s): every event re-renders the screen.
		{resolveDevice: () => ({device: 'cpu', detail: 'in-process test engine'})},
	);

	const engine: ToolEngine = {
		started: [],
		cancelled: [],
		hold: false,
		release() {
			const waiting = held;
			held = new Map();
			for (const go of waiting.values()) {
				go();
			}
		},
		async idle() {
			await server.idle();
		},
		runJob<K extends JobKind>(kind: K, params: JobParams<K>, onProgress: (progress: JobProgress) => void) {
			const jobId = `${kind}-${next++}`;
			engine.started.push({kind, params});
			const promise = new Promise<JobResult<K>>((resolve, reject) => {
				pending.set(jobId, {resolve: resolve as (value: unknown) => void, reject, onProgress});
			});
			const send = (): void => {
				server.handle({type: 'run', jobId, kind, params});
			};

			if (engine.hold) {
				held.set(jobId, send);
			} else {
				send();
			}

			return {jobId, promise};
		},
		runStats(file, onProgress) {
			return engine.runJob!('stats', {path: file}, progress => {
				onProgress(progress.done, progress.total);
			});
		},
		cancel(jobId) {
			engine.cancelled.push(jobId);
			const waiting = pending.get(jobId);
			server.handle({type: 'cancel', jobId});
			// A held job never reached the server: drop it and settle it as the server would.
			if (held.delete(jobId) && waiting) {
				waiting.reject(new CancelledError());
				pending.delete(jobId);
			}
		},
		onEvent(listener) {
			queueMicrotask(() => {
				listener({type: 'ready', device: 'cpu', detail: 'in-process test engine'});
			});
			return () => undefined;
		},
		async close() {
			server.handle({type: 'shutdown'});
		},
	};
	return engine;
}
