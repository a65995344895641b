// Header reading on worker threads, for folders of hundreds of files. Each file's header parse and
// model detection (~1–3 ms for a full SD1.5 or Flux LoRA; ~0.15 ms when its tensor table is shared
// with a file read before, see structure-cache.ts) runs off the main thread, so the
// dashboard stays responsive and several cores share the work. Workers answer with light entries
// (entry.ts: summary and metadata, no tensor table): structured-cloning a parsed 1,750-tensor
// header back costs about as much as parsing it again, and the list needs only the summary. The
// file a user opens is read again in full on the main thread (a few ms).
import os from 'node:os';
import type {Worker} from 'node:worker_threads';
import type {LoraEntry} from './entry.js';
import {startThreadWorker} from './thread-worker.js';

export type HeaderRequest = {id: number; path: string};
export type HeaderReply = {id: number; entry: LoraEntry};

/**
 * Files each worker holds at once. Deep, because a worker reads a shared-table header in ~0.15 ms
 * while the dashboard's main thread may be drawing for 40–80 ms: with 4 in flight the workers sat
 * idle through every frame, and a 1,000-file folder loaded at the pace of the screen.
 */
const perWorkerInFlight = 64;

/**
 * Worker threads for a machine: one core is left to the main thread (the UI), and past four the
 * disk and the main thread's batching, not parsing, bound a scan. On two cores a second worker
 * read the bench's 1,000 full headers no sooner in the dashboard (1.81–1.94 s from process start
 * against 1.37–1.86 s over three runs) and drew three key presses in 156–208 ms instead of
 * 109–159 ms: keys matter more.
 */
export function defaultHeaderThreads(): number {
	const fromEnv = Number(process.env['LORASCOPE_SCAN_THREADS']);
	if (Number.isInteger(fromEnv) && fromEnv >= 1 && fromEnv <= 64) {
		return fromEnv;
	}

	return Math.max(1, Math.min(4, os.availableParallelism() - 1));
}

type Slot = {
	worker: Worker;
	pending: Map<number, {path: string; resolve: (entry: LoraEntry) => void; reject: (error: Error) => void}>;
	failed: boolean;
	/** Whether its worker ever replied (it started): only such a worker is restarted. */
	answered: boolean;
};

/** Workers replaced after dying mid-scan, per pool, before the pool gives up on them. */
const maxRestarts = 8;

/**
 * A worker's heap limit: a hostile header (a million entries) stops that worker with an
 * out-of-memory error, which the pool survives, instead of taking the process down with it.
 */
const workerHeapMb = 1024;

function startWorker(moduleUrl: string, heapMb: number): Worker {
	return startThreadWorker(moduleUrl, 'lora', 'header-worker', heapMb);
}

/**
 * Structured cloning gives every object Object.prototype; metadata maps are null-prototype in this
 * project, so a key such as `constructor` or `toString` in a hostile file is only ever a key.
 */
function restorePrototypes(entry: LoraEntry): LoraEntry {
	if (entry.summary) {
		const metadata = Object.create(null) as Record<string, string>;
		for (const [key, value] of Object.entries(entry.summary.metadata)) {
			metadata[key] = value;
		}

		entry.summary.metadata = metadata;
	}

	return entry;
}

export class HeaderPool {
	/** Starts `threads` workers; they load their modules while the caller goes on. */
	static start(threads = defaultHeaderThreads(), moduleUrl = import.meta.url, options: {heapMb?: number} = {}): HeaderPool {
		return new HeaderPool(threads, moduleUrl, options.heapMb ?? workerHeapMb);
	}

	readonly threads: number;
	private readonly slots: Slot[] = [];
	private readonly queue: Array<{request: HeaderRequest; resolve: (entry: LoraEntry) => void; reject: (error: Error) => void}> = [];
	private nextId = 1;
	private closed = false;

	private readonly moduleUrl: string;
	private readonly heapMb: number;
	private restarts = 0;

	private constructor(threads: number, moduleUrl: string, heapMb: number) {
		this.threads = threads;
		this.moduleUrl = moduleUrl;
		this.heapMb = heapMb;
		for (let i = 0; i < threads; i++) {
			const slot: Slot = {worker: startWorker(moduleUrl, heapMb), pending: new Map(), failed: false, answered: false};
			this.wire(slot);
			this.slots.push(slot);
		}
	}

	/** Wires the replies and failures of a slot's (new) worker. */
	private wire(slot: Slot): void {
		const {worker} = slot;
		// An idle pool must not keep the process alive; a busy one must (see pump).
		worker.unref();
		worker.on('message', (reply: HeaderReply) => {
			slot.answered = true;
			const waiter = slot.pending.get(reply.id);
			if (waiter) {
				slot.pending.delete(reply.id);
				waiter.resolve(restorePrototypes(reply.entry));
			}

			if (slot.pending.size === 0) {
				worker.unref();
			}

			this.pump();
		});
		const fail = (reason: string): void => {
			if (slot.failed || slot.worker !== worker) {
				return;
			}

			slot.failed = true;
			const error = new Error(`header worker stopped: ${reason}`);
			for (const waiter of slot.pending.values()) {
				waiter.reject(error);
			}

			slot.pending.clear();
			// A worker that had been answering died on some file (out of memory on a hostile
			// header, say): the callers of its files read them themselves, and a fresh worker
			// takes its place. One that never answered cannot start at all: no restart loop.
			if (!this.closed && slot.answered && this.restarts < maxRestarts) {
				this.restarts++;
				slot.worker = startWorker(this.moduleUrl, this.heapMb);
				slot.failed = false;
				this.wire(slot);
				this.pump();
			} else if (this.slots.every(s => s.failed)) {
				this.rejectQueued(error);
			}
		};

		worker.on('error', error => {
			fail(error.message.split('\n')[0] ?? 'error');
		});
		worker.on('exit', code => {
			fail(`exit code ${code}`);
		});
	}

	/**
	 * The light entry of one file (see entry.ts). Never rejects for a bad file (that is an entry
	 * with `error`); rejects only when the pool is closed or its workers died, and the caller then
	 * reads the file itself.
	 */
	async load(filePath: string): Promise<LoraEntry> {
		if (this.closed) {
			throw new Error('header pool is closed');
		}

		if (this.slots.every(s => s.failed)) {
			throw new Error('header workers stopped');
		}

		return new Promise((resolve, reject) => {
			this.queue.push({request: {id: this.nextId++, path: filePath}, resolve, reject});
			this.pump();
		});
	}

	/** Stops the workers; loads still waiting reject. */
	async close(): Promise<void> {
		if (this.closed) {
			return;
		}

		this.closed = true;
		const error = new Error('header pool is closed');
		this.rejectQueued(error);
		for (const slot of this.slots) {
			slot.failed = true;
			for (const waiter of slot.pending.values()) {
				waiter.reject(error);
			}

			slot.pending.clear();
		}

		await Promise.all(this.slots.map(async slot => slot.worker.terminate()));
	}

	/** Hands queued files to the least busy live workers, up to perWorkerInFlight each. */
	private pump(): void {
		while (this.queue.length > 0) {
			let best: Slot | undefined;
			for (const slot of this.slots) {
				if (!slot.failed && slot.pending.size < perWorkerInFlight && (!best || slot.pending.size < best.pending.size)) {
					best = slot;
				}
			}

			if (!best) {
				return;
			}

			const {request, resolve, reject} = this.queue.shift()!;
			best.pending.set(request.id, {path: request.path, resolve, reject});
			best.worker.ref();
			best.worker.postMessage(request);
		}
	}

	private rejectQueued(error: Error): void {
		for (const {reject} of this.queue.splice(0)) {
			reject(error);
		}
	}
}
