// The real FolderSource: H3's folder scan (scan.ts) for the names, a stat per file for size and time
// (so the list shows and sorts before any header is read), and H3's header-only loadEntry per file.
import {stat} from 'node:fs/promises';
import path from 'node:path';
import {loadEntry} from '../lora/entry.js';
import {HeaderPool} from '../lora/header-pool.js';
import {isCandidateFile, scanFolder} from '../lora/scan.js';
import type {FoundFile} from '../state/file-row.js';
import type {FolderSource} from './use-folder.js';

/** Stats in flight at once: enough to keep the thread pool busy on a slow disk or NFS. */
const statConcurrency = 64;
/**
 * Found files reach the reducer at most this often. Every batch re-renders the screen (50–100 ms
 * on two cores), and the stats' callbacks wait behind each render: with 50 ms batches 1,000
 * files took 0.43 s to list, with 250 ms one or two batches list them in ~0.1–0.25 s. Larger
 * trees still fill in progressively, four times a second.
 */
const emitMs = 250;

async function list(folder: string, onFiles: (files: FoundFile[]) => void, signal: AbortSignal, onError?: (file: string, reason: string) => void): Promise<void> {
	let pending: FoundFile[] = [];
	let lastEmit = performance.now();
	const emit = (): void => {
		if (pending.length > 0 && !signal.aborted) {
			onFiles(pending);
		}

		pending = [];
		lastEmit = performance.now();
	};

	const inFlight = new Set<Promise<void>>();
	for await (const file of scanFolder(folder, {signal, onError})) {
		const job = stat(file).then(
			info => ({path: file, sizeBytes: info.size, mtimeMs: info.mtimeMs}),
			// A dangling link or a file that vanished: still listed, loadEntry reports why.
			() => ({path: file, sizeBytes: 0, mtimeMs: 0}),
		).then(found => {
			pending.push(found);
			if (performance.now() - lastEmit >= emitMs) {
				emit();
			}
		});
		inFlight.add(job);
		void job.finally(() => inFlight.delete(job));
		if (inFlight.size >= statConcurrency) {
			await Promise.race(inFlight);
		}
	}

	await Promise.all(inFlight);
	emit();
}

let headerPool: HeaderPool | undefined;

/** Stops the header workers, if a large folder started them (they never hold the process open). */
export async function closeHeaderPool(): Promise<void> {
	const pool = headerPool;
	headerPool = undefined;
	await pool?.close();
}

export const fileSystemSource: FolderSource = {
	list,
	// Header only: the list never reads tensor data. The selected file's alphas are read on demand.
	load: async file => loadEntry(file),
	// Started on first use: only folders larger than the first screenfuls use workers.
	loadLight: async file => (headerPool ??= HeaderPool.start()).load(file),
	loadExact: async file => loadEntry(file, {alphas: true}),
	accepts: file => isCandidateFile(path.basename(file)) && !path.basename(file).startsWith('.'),
};

/**
 * `source` with the listing of `folder` already started: the dashboard starts it before Ink and
 * React load (~0.15–0.5 s of module loading the stats overlap), and the first `list` of that
 * folder replays what was found so far, then forwards the rest as it comes. Later calls, or
 * another folder, list afresh.
 */
export function withPrefetchedListing(source: FolderSource, folder: string): FolderSource {
	const found: FoundFile[][] = [];
	const skipped: Array<[string, string]> = [];
	let consumer: {onFiles: (files: FoundFile[]) => void; onError?: (file: string, reason: string) => void} | undefined;
	const controller = new AbortController();
	const listing = source.list(
		folder,
		files => {
			if (consumer) {
				consumer.onFiles(files);
			} else {
				found.push(files);
			}
		},
		controller.signal,
		(file, reason) => {
			if (consumer) {
				consumer.onError?.(file, reason);
			} else {
				skipped.push([file, reason]);
			}
		},
	);
	// Observed here so an unreadable folder is not an unhandled rejection before the app asks.
	listing.catch(() => undefined);
	let used = false;
	return {
		...source,
		async list(asked, onFiles, signal, onError) {
			if (used || asked !== folder) {
				return source.list(asked, onFiles, signal, onError);
			}

			used = true;
			signal.addEventListener('abort', () => {
				controller.abort();
			}, {once: true});
			for (const files of found.splice(0)) {
				onFiles(files);
			}

			for (const [file, reason] of skipped.splice(0)) {
				onError?.(file, reason);
			}

			consumer = {onFiles, onError};
			return listing;
		},
	};
}
