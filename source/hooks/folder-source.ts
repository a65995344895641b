// The real FolderSource: H3's folder scan (scan.ts) for the names, a stat per file for size and time
// (so the list shows and sorts before any header is read), and H3's header-only loadEntry per file.
import {stat} from 'node:fs/promises';
import path from 'node:path';
import {loadEntry} from '../lora/entry.js';
import {isCandidateFile, scanFolder} from '../lora/scan.js';
import type {FoundFile} from '../state/file-row.js';
import type {FolderSource} from './use-folder.js';

/** Stats in flight at once: enough to keep the thread pool busy on a slow disk or NFS. */
const statConcurrency = 64;
/**
 * Found files reach the reducer at most this often: every batch re-renders the list, and ten
 * renders of a 1,000-row list cost more than the 1,000 stats themselves.
 */
const emitMs = 50;

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

export const fileSystemSource: FolderSource = {
	list,
	// Header only: the list never reads tensor data. The selected file's alphas are read on demand.
	load: async file => loadEntry(file),
	loadExact: async file => loadEntry(file, {alphas: true}),
	accepts: file => isCandidateFile(path.basename(file)) && !path.basename(file).startsWith('.'),
};
