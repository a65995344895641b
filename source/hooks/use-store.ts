// useReducer with a synchronous getter: several keys can arrive before React re-renders (a paste, a
// fast typist, tmux send-keys), and each must be routed against the state the previous one produced.
import {useCallback, useRef, useState} from 'react';
import {reducer, type Action} from '../state/reducer.js';
import type {AppState} from '../state/types.js';

export type Store = {
	state: AppState;
	dispatch: (action: Action | Action[]) => void;
	getState: () => AppState;
};

export function useStore(init: () => AppState): Store {
	const ref = useRef<AppState | undefined>(undefined);
	ref.current ??= init();
	const [state, setState] = useState<AppState>(ref.current);
	const dispatch = useCallback((action: Action | Action[]) => {
		let next = ref.current!;
		for (const a of Array.isArray(action) ? action : [action]) {
			next = reducer(next, a);
		}

		if (next !== ref.current) {
			ref.current = next;
			setState(next);
		}
	}, []);
	const getState = useCallback(() => ref.current!, []);
	return {state, dispatch, getState};
}
