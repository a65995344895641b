// One engine for the whole dashboard: statistics (use-stats) and the tools (resize, hashes, metadata
// saves) share a single worker process, created on first need by whichever asks first. The holder
// owns the engine's event subscription (device report, log lines → reducer actions) and its close on
// unmount; use-stats gets a view of the same engine whose `onEvent` only replays the device report
// (so its own "starting" is followed by "ready") and whose `close` does nothing.
import {useEffect, useMemo} from 'react';
import type {Action} from '../state/reducer.js';
import type {EngineFactory, EngineNotice, StatsEngine} from './stats-engine.js';

export type SharedEngine = {
	/** The engine, created on first call; undefined when the app has none. */
	get: () => StatsEngine | undefined;
	/** For use-stats: hands out the same engine. */
	statsFactory: EngineFactory | undefined;
	close: () => void;
};

export function createSharedEngine(factory: EngineFactory | undefined, dispatch: (action: Action | Action[]) => void): SharedEngine {
	let engine: StatsEngine | undefined;
	let unsubscribe: (() => void) | undefined;
	let device: EngineNotice | undefined;
	let closed = false;

	const get = (): StatsEngine | undefined => {
		if (engine || !factory || closed) {
			return engine;
		}

		dispatch({type: 'engine', engine: {state: 'starting'}});
		engine = factory();
		unsubscribe = engine.onEvent(event => {
			if (event.type === 'log') {
				dispatch({type: 'log', line: {...event.log, time: Date.now()}});
			} else if (event.type === 'ready') {
				device = event;
				dispatch({type: 'engine', engine: {state: 'ready', device: event.device, detail: event.detail}});
			} else {
				device = event;
				dispatch([
					{type: 'engine', engine: {state: 'failed', detail: event.reason}},
					{type: 'log', line: {level: 'error', message: event.reason, time: Date.now()}},
				]);
			}
		});
		return engine;
	};

	const statsFactory: EngineFactory | undefined = factory
		? () => {
			const shared = get()!;
			const view: StatsEngine = {
				runStats: (file, onProgress) => shared.runStats(file, onProgress),
				cancel(jobId) {
					shared.cancel(jobId);
				},
				onEvent(listener) {
					const known = device;
					if (known) {
						queueMicrotask(() => {
							listener(known);
						});
					}

					return () => undefined;
				},
				close: async () => undefined,
			};
			return view;
		}
		: undefined;

	return {
		get,
		statsFactory,
		close() {
			closed = true;
			unsubscribe?.();
			void engine?.close();
			engine = undefined;
		},
	};
}

/** The app's shared engine, closed when the app unmounts. */
export function useSharedEngine(factory: EngineFactory | undefined, dispatch: (action: Action | Action[]) => void): SharedEngine {
	const shared = useMemo(() => createSharedEngine(factory, dispatch), [factory, dispatch]);
	useEffect(
		() => () => {
			shared.close();
		},
		[shared],
	);
	return shared;
}
