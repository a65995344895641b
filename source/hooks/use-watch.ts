// Watches the folder (recursively) for new, rewritten and deleted LoRAs. A changed file is read only
// once its size and mtime have stopped changing (a trainer or copy still writing it would otherwise
// show as broken), then it arrives as 'file-updated' with a "new" badge.
import {watch, type FSWatcher} from 'node:fs';
import {stat} from 'node:fs/promises';
import path from 'node:path';
import {useEffect} from 'react';
import {tempMarker} from '../lora/writer.js';
import type {Action} from '../state/reducer.js';
import type {AppState} from '../state/types.js';
import type {FolderSource} from './use-folder.js';

/** How long size and mtime must stay the same before the file is read. */
export const settleMs = 400;

type Pending = {timer: NodeJS.Timeout; size: number; mtimeMs: number};

export function useWatch(folder: string, enabled: boolean, source: FolderSource, dispatch: (action: Action | Action[]) => void, getState: () => AppState): void {
	useEffect(() => {
		if (!enabled) {
			return;
		}

		const pending = new Map<string, Pending>();
		let closed = false;
		const check = async (file: string): Promise<void> => {
			if (closed) {
				return;
			}

			let info;
			try {
				info = await stat(file);
			} catch {
				pending.delete(file);
				if (getState().rows.has(file)) {
					dispatch({type: 'file-removed', path: file});
				}

				return;
			}

			if (closed || !info.isFile()) {
				pending.delete(file);
				return;
			}

			const previous = pending.get(file);
			if (!previous || previous.size !== info.size || previous.mtimeMs !== info.mtimeMs || info.size === 0) {
				// Still changing (or empty so far): look again after a quiet period.
				clearTimeout(previous?.timer);
				pending.set(file, {size: info.size, mtimeMs: info.mtimeMs, timer: setTimeout(() => void check(file), settleMs)});
				return;
			}

			pending.delete(file);
			const known = getState().rows.get(file);
			if (known && known.sizeBytes === info.size && known.mtimeMs === info.mtimeMs && known.status !== 'pending') {
				return; // An event without a change (touch of the folder, a read).
			}

			const entry = await source.load(file);
			if (!closed) {
				dispatch({type: 'file-updated', entry});
			}
		};

		const schedule = (file: string): void => {
			const existing = pending.get(file);
			clearTimeout(existing?.timer);
			pending.set(file, {size: existing?.size ?? -1, mtimeMs: existing?.mtimeMs ?? -1, timer: setTimeout(() => void check(file), settleMs)});
		};

		let watcher: FSWatcher | undefined;
		try {
			watcher = watch(folder, {recursive: true}, (_event, name) => {
				if (typeof name !== 'string' || name === '') {
					return;
				}

				const file = path.join(folder, name);
				if (path.basename(file).includes(tempMarker) || !source.accepts(file)) {
					return;
				}

				schedule(file);
			});
			watcher.on('error', error => {
				dispatch({type: 'log', line: {level: 'warn', message: `watch stopped: ${error.message}`, time: Date.now()}});
			});
		} catch (error) {
			dispatch({type: 'log', line: {level: 'warn', message: `cannot watch ${folder}: ${error instanceof Error ? error.message : String(error)}`, time: Date.now()}});
		}

		return () => {
			closed = true;
			watcher?.close();
			for (const {timer} of pending.values()) {
				clearTimeout(timer);
			}
		};
	}, [folder, enabled, source, dispatch, getState]);
}
