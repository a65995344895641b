/** @jsxRuntime automatic */
// A large folder read partly on worker threads (use-folder.ts with a loadLight source): the first
// screenfuls are read in full on the main thread, the rest arrive as light entries whose rows
// show the same summary, a worker failure falls back to a main-thread read, and a light entry
// that is selected is read in full at once, then with its alphas.
import assert from 'node:assert/strict';
import {copyFile} from 'node:fs/promises';
import path from 'node:path';
import {after, before, test} from 'node:test';
import {render} from 'ink-testing-library';
import {Text} from 'ink';
import {useState} from 'react';
import {fileSystemSource} from '../source/hooks/folder-source.js';
import {useExactEntries, useFolder, type FolderSource} from '../source/hooks/use-folder.js';
import {isLightEntry, type LoraEntry} from '../source/lora/entry.js';
import {HeaderPool} from '../source/lora/header-pool.js';
import {initialState, reducer, type Action} from '../source/state/reducer.js';
import type {AppState} from '../source/state/types.js';
import {sample, tempFolder} from './helpers/fixtures.js';
import {unicodeEnv} from './helpers/entries.js';

const count = 90;
let folder: {dir: string; remove: () => Promise<void>};
let pool: HeaderPool;

before(async () => {
	folder = await tempFolder('lorascope-folder-light-');
	const first = await sample(folder.dir, 'run-000.safetensors', 'sd15-lora', {rank: 4, alpha: 2, hashes: false});
	for (let i = 1; i < count; i++) {
		await copyFile(first, path.join(folder.dir, `run-${String(i).padStart(3, '0')}.safetensors`));
	}

	pool = HeaderPool.start(1);
});

after(async () => {
	await pool.close();
	await folder.remove();
});

/** Runs `body` with a store the hooks dispatch into, until `until` holds. */
async function withStore(
	Component: (props: {dispatch: (action: Action | Action[]) => void; getState: () => AppState}) => undefined,
	until: (state: AppState, actions: Action[]) => boolean,
): Promise<{state: AppState; actions: Action[]}> {
	let state = initialState(folder.dir, unicodeEnv);
	const actions: Action[] = [];
	const dispatch = (action: Action | Action[]): void => {
		for (const one of Array.isArray(action) ? action : [action]) {
			actions.push(one);
			state = reducer(state, one);
		}
	};

	const getState = (): AppState => state;
	function Host() {
		Component({dispatch, getState});
		return <Text>host</Text>;
	}

	const app = render(<Host/>);
	try {
		const deadline = Date.now() + 30_000;
		while (!until(state, actions)) {
			assert.ok(Date.now() < deadline, 'timed out');
			await new Promise(resolve => {
				setTimeout(resolve, 10);
			});
		}
	} finally {
		app.unmount();
	}

	return {state, actions};
}

test('past the first screenfuls, rows come from workers as light entries with the same summary', async () => {
	const calls = {load: [] as string[], light: [] as string[]};
	const failing = path.join(folder.dir, 'run-001.safetensors');
	const source: FolderSource = {
		...fileSystemSource,
		async load(file) {
			calls.load.push(file);
			return fileSystemSource.load(file);
		},
		async loadLight(file) {
			calls.light.push(file);
			if (file === failing) {
				throw new Error('header worker stopped: test');
			}

			return pool.load(file);
		},
	};
	const {state} = await withStore(({dispatch, getState}) => {
		useFolder(folder.dir, source, dispatch, getState);
		return undefined;
	}, state => state.scan.state === 'ready');

	assert.equal(state.rows.size, count);
	const rows = [...state.rows.values()];
	assert.ok(rows.every(row => row.status === 'ok'), 'every file read');
	// 48 in full on the main thread, the rest on the worker; the worker's failure read again.
	assert.equal(calls.load.length, 48 + 1);
	assert.equal(calls.light.length, count - 48);
	assert.ok(calls.load.includes(failing));
	const light = rows.filter(row => isLightEntry(row.entry));
	assert.equal(light.length, count - 48 - 1);
	assert.ok(!light.some(row => row.path === failing));
	// The main thread read the head of the list (newest first): no light row sits above a full one.
	const firstLight = state.order.findIndex(p => isLightEntry(state.rows.get(p)!.entry));
	assert.ok(state.order.slice(firstLight).every(p => isLightEntry(state.rows.get(p)!.entry) || p === failing));
	// Same bytes, same row summary, whichever thread read them.
	const full = rows.find(row => !isLightEntry(row.entry))!;
	for (const row of light) {
		assert.deepEqual({...row.summary, epoch: undefined}, {...full.summary, epoch: undefined}, row.name);
	}

	assert.equal(full.summary.rank, 4);
	assert.equal(full.summary.arch, 'sd1');
	assert.equal(full.summary.moduleCount, full.entry!.model!.modules.length);
});

test('a selected light entry is read in full at once, then with its alphas', async () => {
	const file = path.join(folder.dir, 'run-002.safetensors');
	const light = await pool.load(file);
	assert.ok(isLightEntry(light));
	const refined: LoraEntry[] = [];
	// The selected entry as the app holds it: replaced by each refinement, which re-renders.
	function Selected() {
		const [entry, setEntry] = useState<LoraEntry>(light);
		useExactEntries(fileSystemSource, [entry], actions => {
			for (const action of Array.isArray(actions) ? actions : [actions]) {
				if (action.type === 'entry-refined') {
					refined.push(action.entry);
					setEntry(action.entry);
				}
			}
		});
		return <Text>{entry.alphasLoaded ? 'exact' : 'reading'}</Text>;
	}

	const app = render(<Selected/>);
	try {
		const deadline = Date.now() + 30_000;
		while (refined.length < 2) {
			assert.ok(Date.now() < deadline, 'timed out');
			await new Promise(resolve => {
				setTimeout(resolve, 10);
			});
		}
	} finally {
		app.unmount();
	}

	assert.ok(refined[0]!.header && refined[0]!.model, 'first the full header and model');
	assert.equal(refined[0]!.alphasLoaded, false);
	assert.equal(refined[1]!.alphasLoaded, true, 'then the alphas');
	assert.equal(refined[1]!.model!.alpha, 2);
});
