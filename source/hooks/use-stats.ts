// Starts the engine's stats jobs the screen needs (the selected file while the Blocks tab shows, the
// files of an open compare), cancels the ones no longer needed, and turns job events into reducer
// actions. Results are cached in the state per path + size + mtime, so coming back is instant.
import {useEffect, useRef} from 'react';
import {CancelledError} from '../engine/protocol.js';
import type {Action} from '../state/reducer.js';
import {baseView, selectedRow, statsKeyOf} from '../state/selectors.js';
import type {AppState} from '../state/types.js';
import type {EngineFactory, StatsEngine} from './stats-engine.js';

export type NeededStats = {key: string; path: string; label: string};

/** Pure: the stats the current screen shows and does not have yet (or had cancelled). */
export function neededStats(state: AppState): NeededStats[] {
	const wanted: NeededStats[] = [];
	const add = (path: string): void => {
		const row = state.rows.get(path);
		if (row?.status !== 'ok') {
			return;
		}

		const key = statsKeyOf(row);
		if (!wanted.some(w => w.key === key)) {
			wanted.push({key, path, label: `stats ${row.name}`});
		}
	};

	const view = baseView(state);
	if (view === 'compare' && state.compare) {
		for (const path of state.compare.paths) {
			add(path);
		}
	} else if (state.detail.tab === 'blocks') {
		const row = selectedRow(state);
		if (row) {
			add(row.path);
		}
	}

	return wanted;
}

/** Debounce before starting a job, so scrolling through files with Blocks open starts nothing. */
const startDelayMs = 150;

function reasonOf(error: unknown): string {
	if (error && typeof error === 'object' && 'reason' in error && typeof (error as {reason: unknown}).reason === 'string') {
		return (error as {reason: string}).reason;
	}

	return error instanceof Error ? error.message.split('\n')[0] ?? error.name : String(error);
}

export function useStats(state: AppState, dispatch: (action: Action | Action[]) => void, getState: () => AppState, factory: EngineFactory | undefined): void {
	const engineRef = useRef<StatsEngine | undefined>(undefined);
	const unsubscribeRef = useRef<(() => void) | undefined>(undefined);
	const needed = neededStats(state);
	const neededKey = needed.map(n => n.key).join('\n');

	useEffect(() => {
		if (!factory) {
			return;
		}

		const timer = setTimeout(() => {
			const current = getState();
			const wanted = neededStats(current);
			const wantedKeys = new Set(wanted.map(w => w.key));
			// Cancel running jobs nobody looks at any more; their slot shows "cancelled" if revisited.
			for (const [jobId, job] of Object.entries(current.jobs)) {
				if (job.state === 'running' && !wantedKeys.has(job.key)) {
					engineRef.current?.cancel(jobId);
				}
			}

			for (const want of wanted) {
				const slot = current.stats[want.key];
				if (slot && slot.state !== 'cancelled') {
					continue;
				}

				if (!engineRef.current) {
					dispatch({type: 'engine', engine: {state: 'starting'}});
					const engine = factory();
					engineRef.current = engine;
					unsubscribeRef.current = engine.onEvent(event => {
						if (event.type === 'log') {
							dispatch({type: 'log', line: {...event.log, time: Date.now()}});
						} else if (event.type === 'ready') {
							dispatch({type: 'engine', engine: {state: 'ready', device: event.device, detail: event.detail}});
						} else {
							dispatch([
								{type: 'engine', engine: {state: 'failed', detail: event.reason}},
								{type: 'log', line: {level: 'error', message: event.reason, time: Date.now()}},
							]);
						}
					});
				}

				const {jobId, promise} = engineRef.current.runStats(want.path, (done, total) => {
					dispatch({type: 'job-progress', jobId, done, total});
				});
				dispatch({type: 'stats-started', key: want.key, jobId, path: want.path, label: want.label});
				promise.then(
					result => {
						dispatch({type: 'job-result', jobId, result});
					},
					(error: unknown) => {
						dispatch(error instanceof CancelledError ? {type: 'job-cancelled', jobId} : {type: 'job-error', jobId, error: `stats: ${reasonOf(error)}`});
					},
				);
			}
		}, startDelayMs);
		return () => {
			clearTimeout(timer);
		};
	}, [neededKey, factory, dispatch, getState]);

	useEffect(
		() => () => {
			unsubscribeRef.current?.();
			void engineRef.current?.close();
			engineRef.current = undefined;
		},
		[],
	);
}
