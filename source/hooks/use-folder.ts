// Opens the folder progressively: the listing (names, sizes, times) goes on screen first, then the
// headers load a few at a time, newest (top of the list) first, in batches that arrive as reducer
// actions: every ~50 ms while the first screenfuls fill in, then every ~250 ms (each batch
// re-renders the screen, and on a 1,000-file folder rendering at 20 Hz took a quarter of the
// load time for rows nobody sees yet). Key handling never waits on any of it.
import {useEffect, useRef} from 'react';
import {isLightEntry} from '../lora/entry.js';
import type {LoadedEntry} from '../state/entry-shape.js';
import type {FoundFile} from '../state/file-row.js';
import type {Action} from '../state/reducer.js';
import type {AppState} from '../state/types.js';

export type FolderSource = {
	/** Lists the LoRA files under the folder, calling onFiles as batches are found; unreadable subfolders go to onError. */
	list: (folder: string, onFiles: (files: FoundFile[]) => void, signal: AbortSignal, onError?: (path: string, reason: string) => void) => Promise<void>;
	/** Header-only read of one file; never throws (a failure is an entry with `error`). */
	load: (path: string) => Promise<LoadedEntry>;
	/**
	 * The same read off the main thread, answering a light entry (summary only; entry.ts). Used
	 * for the files past the first screenfuls of a large folder; it may reject (workers gone), and
	 * the file is then read with `load`.
	 */
	loadLight?: (path: string) => Promise<LoadedEntry>;
	/** The same plus the values of the alpha tensors (exact alpha and scale), for the selected file. */
	loadExact?: (path: string) => Promise<LoadedEntry>;
	/** Whether a path is a file the list shows (for the watcher). */
	accepts: (path: string) => boolean;
};

const concurrency = 8;
/**
 * With worker threads (loadLight), the main thread still reads the first files in list order in
 * full: they are on screen, likely to be opened, and the workers need ~60–100 ms to start.
 */
const mainThreadEntries = 48;
/** Light reads in flight: enough to keep every worker's queue full (header-pool.ts holds 64 each). */
const lightConcurrency = 256;
/** A little over one Ink frame (maxFps 30). */
const listingFrameMs = 40;
/** Batches of the first `eagerEntries` headers: the rows on screen first, so quickly. */
const eagerFlushMs = 50;
const eagerEntries = 200;
/** Later batches: rows further down; the title's progress still moves four times a second. */
const lateFlushMs = 250;

export function useFolder(folder: string, source: FolderSource, dispatch: (action: Action | Action[]) => void, getState: () => AppState): void {
	useEffect(() => {
		const controller = new AbortController();
		const {signal} = controller;
		let buffer: LoadedEntry[] = [];
		let timer: NodeJS.Timeout | undefined;
		let delivered = 0;
		const flush = (): void => {
			timer = undefined;
			if (buffer.length > 0 && !signal.aborted) {
				const entries = buffer;
				buffer = [];
				delivered += entries.length;
				dispatch({type: 'entries-loaded', entries, now: Date.now()});
			}
		};

		const push = (entry: LoadedEntry): void => {
			buffer.push(entry);
			timer ??= setTimeout(flush, delivered < eagerEntries ? eagerFlushMs : lateFlushMs);
		};

		const run = async (): Promise<void> => {
			dispatch({type: 'scan-started', now: Date.now()});
			const found: FoundFile[] = [];
			await source.list(
				folder,
				files => {
					found.push(...files);
					dispatch({type: 'files-found', files, now: Date.now()});
				},
				signal,
				(path, reason) => {
					dispatch({type: 'log', line: {level: 'warn', message: `skipped ${path}: ${reason}`, time: Date.now()}});
				},
			);
			// Let Ink draw the complete listing (it renders at most ~30 times a second) before header
			// parsing takes the main thread: otherwise the last rows wait behind the first batches.
			await new Promise(resolve => {
				setTimeout(resolve, listingFrameMs);
			});
			// Load in list order (newest first by default), so the rows on screen fill in first.
			const state = getState();
			const queue = [...state.order.filter(p => state.rows.get(p)?.status === 'pending')];
			const seen = new Set(queue);
			for (const file of found) {
				if (!seen.has(file.path)) {
					queue.push(file.path);
				}
			}

			const {loadLight} = source;
			const useLight = loadLight !== undefined && queue.length > mainThreadEntries;
			// Main-thread readers take the head of the queue (all of it without workers); light
			// readers take the rest, so the top rows never wait on workers starting.
			let next = 0;
			const headEnd = useLight ? mainThreadEntries : queue.length;
			let nextLight = headEnd;
			const reader = async (): Promise<void> => {
				while (next < headEnd && !signal.aborted) {
					const path = queue[next++]!;
					push(await source.load(path));
				}
			};

			const lightReader = async (): Promise<void> => {
				while (nextLight < queue.length && !signal.aborted) {
					const path = queue[nextLight++]!;
					let entry: LoadedEntry;
					try {
						entry = await loadLight!(path);
					} catch {
						entry = await source.load(path);
					}

					push(entry);
				}
			};

			await Promise.all([
				...Array.from({length: concurrency}, async () => reader()),
				...(useLight ? Array.from({length: lightConcurrency}, async () => lightReader()) : []),
			]);
			clearTimeout(timer);
			flush();
			if (!signal.aborted) {
				dispatch({type: 'scan-finished', now: Date.now()});
			}
		};

		run().catch((error: unknown) => {
			if (!signal.aborted) {
				dispatch({type: 'scan-failed', error: `cannot read ${folder}: ${error instanceof Error ? error.message.split('\n')[0] : String(error)}`});
			}
		});
		return () => {
			controller.abort();
			clearTimeout(timer);
		};
	}, [folder, source, dispatch, getState]);
}

/**
 * The header-only read leaves kohya alphas (stored as tensors) unread; the files on screen in detail
 * (the selected one, the compared ones) get them read in the background, so alpha, scale and the
 * rank/alpha comparison are exact. A light entry (read by a scan worker: summary only) is first
 * read in full at once, so its details show within a few milliseconds; its alphas follow.
 */
export function useExactEntries(source: FolderSource, wanted: ReadonlyArray<LoadedEntry | undefined>, dispatch: (action: Action | Action[]) => void): void {
	const pending = wanted.filter((entry): entry is LoadedEntry => entry !== undefined && !entry.error && entry.alphasLoaded === false);
	const key = pending.map(entry => `${entry.path}\u0000${entry.mtimeMs}${isLightEntry(entry) ? '\u0000light' : ''}`).join('\n');
	const entriesRef = useRef(pending);
	entriesRef.current = pending;
	useEffect(() => {
		const anyLight = entriesRef.current.some(entry => isLightEntry(entry));
		if (key === '' || (!source.loadExact && !anyLight)) {
			return;
		}

		let cancelled = false;
		const timer = setTimeout(() => {
			for (const entry of entriesRef.current) {
				const read = isLightEntry(entry) ? source.load : source.loadExact;
				if (!read) {
					continue;
				}

				void read(entry.path).then(refined => {
					if (!cancelled && !refined.error && refined.mtimeMs === entry.mtimeMs && refined.sizeBytes === entry.sizeBytes) {
						dispatch({type: 'entry-refined', entry: refined});
					}
				});
			}
		}, anyLight ? 0 : 80);
		return () => {
			cancelled = true;
			clearTimeout(timer);
		};
	}, [source, key, dispatch]);
}
