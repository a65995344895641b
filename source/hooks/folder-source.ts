// The real FolderSource: H3's folder scan (scan.ts) for the names, a stat per file for size and time
// (so the list shows and sorts before any header is read), and H3's header-only loadEntry per file.
import {stat} from 'node:fs/promises';
import path from 'node:path';
import {loadEntry} from '../lora/entry.js';
import {isCandidateFile, scanFolder} from '../lora/scan.js';
import type {FoundFile} from '../state/file-row.js';
import type {FolderSource} from './use-folder.js';

/** Files are stat'ed and reported in batches of this many. */
const batchSize = 100;

async function list(folder: string, onFiles: (files: FoundFile[]) => void, signal: AbortSignal, onError?: (file: string, reason: string) => void): Promise<void> {
	let names: string[] = [];
	const flush = async (): Promise<void> => {
		const batch = names;
		names = [];
		const found = await Promise.all(
			batch.map(async file =>
				stat(file).then(
					info => ({path: file, sizeBytes: info.size, mtimeMs: info.mtimeMs}),
					// A dangling link or a file that vanished: still listed, loadEntry reports why.
					() => ({path: file, sizeBytes: 0, mtimeMs: 0}),
				),
			),
		);
		if (found.length > 0 && !signal.aborted) {
			onFiles(found);
		}
	};

	for await (const file of scanFolder(folder, {signal, onError})) {
		names.push(file);
		if (names.length >= batchSize) {
			await flush();
		}
	}

	await flush();
}

export const fileSystemSource: FolderSource = {
	list,
	// Header only: the list never reads tensor data. The selected file's alphas are read on demand.
	load: async file => loadEntry(file),
	loadExact: async file => loadEntry(file, {alphas: true}),
	accepts: file => isCandidateFile(path.basename(file)) && !path.basename(file).startsWith('.'),
};
