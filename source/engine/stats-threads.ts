// One file's statistics on several threads (`inspect -w`): the main thread and helper worker
// threads run computeStatsPart over one plan, taking chunks from a shared counter, and
// finishStats merges their parts. On two cores this overlaps the JS pass that sums every value
// with onnxruntime's Grams, which otherwise run one after the other on the main thread
// (onnxruntime-node's run() is synchronous).
import os from 'node:os';
import type {Worker} from 'node:worker_threads';
import {LoraFileError} from '../lora/safetensors.js';
import {computeStatsPart, computeStatsWithModel, finishStats, planStats, sharedClaim, type StatsPart} from '../lora/stats.js';
import {startThreadWorker} from '../lora/thread-worker.js';
import type {GramKernels, LoraModel, LoraStats, SafetensorsHeader} from '../lora/types.js';

export type StatsThreadRequest = {id: number; header: SafetensorsHeader; model: LoraModel; counter: SharedArrayBuffer};
export type StatsThreadReply = {id: number; part?: StatsPart; error?: {message: string; reason?: string}} | {ready: true};

/** Below this much tensor data, starting threads costs more than it saves. */
export const threadedStatsMinBytes = 32 * 1024 * 1024;

/** Above this many tensors, copying the header to each thread costs more than it saves. */
export const threadedStatsMaxTensors = 50_000;

/** Helper threads besides the main one: one per further core, at most 3. */
export function defaultStatsHelpers(): number {
	return Math.max(0, Math.min(3, os.availableParallelism() - 1));
}

/** A helper's heap: its read windows and one onnxruntime session are a few tens of MB. */
const helperHeapMb = 512;

class HelperFailed extends Error {}

export class StatsThreads {
	static start(helpers = defaultStatsHelpers(), moduleUrl = import.meta.url): StatsThreads {
		return new StatsThreads(helpers, moduleUrl);
	}

	readonly helpers: number;
	private readonly workers: Worker[] = [];
	private readonly started: Array<Promise<void>> = [];
	private readonly pending = new Map<number, {worker: Worker; path: string; resolve: (part: StatsPart) => void; reject: (error: Error) => void}>();
	private nextId = 1;

	private constructor(helpers: number, moduleUrl: string) {
		this.helpers = helpers;
		for (let i = 0; i < helpers; i++) {
			const worker = startThreadWorker(moduleUrl, 'engine', 'stats-thread-worker', helperHeapMb);
			// Idle helpers never keep the process alive; one with work does (see share).
			worker.unref();
			let markStarted = (): void => undefined;
			this.started.push(new Promise(resolve => {
				markStarted = resolve;
			}));
			worker.on('message', (reply: StatsThreadReply) => {
				if ('ready' in reply) {
					markStarted();
					return;
				}

				const waiter = this.pending.get(reply.id);
				if (!waiter) {
					return;
				}

				this.pending.delete(reply.id);
				if (![...this.pending.values()].some(p => p.worker === worker)) {
					worker.unref();
				}

				if (reply.part) {
					waiter.resolve(reply.part);
				} else {
					const {message, reason} = reply.error ?? {message: 'stats thread failed'};
					waiter.reject(reason === undefined ? new HelperFailed(message) : new LoraFileError(waiter.path, reason));
				}
			});
			const fail = (reason: string): void => {
				markStarted();
				// A stopped helper gets no more shares: later files are split among the rest.
				const index = this.workers.indexOf(worker);
				if (index !== -1) {
					this.workers.splice(index, 1);
				}

				for (const [id, waiter] of this.pending) {
					if (waiter.worker === worker) {
						this.pending.delete(id);
						waiter.reject(new HelperFailed(`stats thread stopped: ${reason}`));
					}
				}
			};

			worker.on('error', error => {
				fail(error.message.split('\n')[0] ?? 'error');
			});
			worker.on('exit', code => {
				fail(`exit code ${code}`);
			});
			this.workers.push(worker);
		}
	}

	/** Resolves once every helper has its onnxruntime session (or has failed to start). */
	async ready(): Promise<void> {
		await Promise.all(this.started);
	}

	/** Starts every helper on its share of `header`'s plan; each part arrives on its own. */
	share(header: SafetensorsHeader, model: LoraModel, counter: SharedArrayBuffer): Array<Promise<StatsPart>> {
		return this.workers.map(async worker => new Promise<StatsPart>((resolve, reject) => {
			const id = this.nextId++;
			this.pending.set(id, {worker, path: header.path, resolve, reject});
			worker.ref();
			const request: StatsThreadRequest = {id, header, model, counter};
			worker.postMessage(request);
		}));
	}

	async close(): Promise<void> {
		await Promise.all(this.workers.splice(0).map(async worker => worker.terminate()));
	}
}

let shared: StatsThreads | undefined;

/** The process's helper threads, started on first use (and never holding the process open). */
export function sharedStatsThreads(): StatsThreads {
	shared ??= StatsThreads.start();
	return shared;
}

/**
 * computeStatsWithModel on the main thread plus `threads`' helpers. A helper that fails on the
 * file (a read error) fails the call like a single thread would; a helper that stops for any
 * other reason makes the main thread compute the whole file alone.
 */
export async function computeStatsThreaded(header: SafetensorsHeader, model: LoraModel, kernels: GramKernels, threads: StatsThreads): Promise<{stats: LoraStats; model: LoraModel; modulesByThread: number[]}> {
	const plan = planStats(header, model);
	const counter = new SharedArrayBuffer(4);
	const claim = sharedClaim(counter, plan.chunks.length);

	const shares = threads.share(header, model, counter);
	for (const share of shares) {
		// Observed now: a helper may fail while the main thread is still busy.
		share.catch(() => undefined);
	}

	let main: StatsPart;
	try {
		main = await computeStatsPart(header, model, plan, {kernels, claim});
	} catch (error) {
		// Stop the helpers taking more chunks, and let them finish before reporting.
		Atomics.store(new Int32Array(counter), 0, plan.chunks.length);
		await Promise.allSettled(shares);
		throw error;
	}

	const settled = await Promise.allSettled(shares);
	const parts: StatsPart[] = [main];
	for (const result of settled) {
		if (result.status === 'fulfilled') {
			parts.push(result.value);
		} else if (result.reason instanceof HelperFailed) {
			return {...await computeStatsWithModel(header, model, {kernels}), modulesByThread: [model.modules.length]};
		} else {
			throw result.reason;
		}
	}

	return {...finishStats(header, model, parts), modulesByThread: parts.map(part => part.modulesDone)};
}
