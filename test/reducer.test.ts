import assert from 'node:assert/strict';
import {test} from 'node:test';
import type {LoraStats} from '../source/lora/types.js';
import {initialState, reducer, type Action} from '../source/state/reducer.js';
import {compareChoice, previousEpochChoice, selectedPath, statsKeyOf, topView} from '../source/state/selectors.js';
import type {AppState} from '../source/state/types.js';
import {fakeEntry, unicodeEnv} from './helpers/entries.js';

const folder = '/data/loras';
const t0 = 1_700_000_000_000;

function apply(state: AppState, ...actions: Action[]): AppState {
	return actions.reduce(reducer, state);
}

function base(listRows = 5): AppState {
	return apply(initialState(folder, unicodeEnv), {type: 'viewport', viewport: {listRows, detailRows: 10, detailWidth: 60, bodyRows: 20, bodyWidth: 100}});
}

/** Files a..e, modified one minute apart (e newest), with ranks and epochs in another order. */
function loaded(listRows = 5): AppState {
	const names = ['a', 'b', 'c', 'd', 'e'];
	const entries = names.map((name, i) =>
		fakeEntry(`${folder}/${name}.safetensors`, {
			mtime: t0 + i * 60_000,
			size: (5 - i) * 1000,
			rank: [16, 64, 8, 32, 4][i]!,
			metadata: {ss_epoch: String([3, 1, 5, 2, 4][i]), ss_output_name: 'run', ss_optimizer: i % 2 ? 'prodigyopt.Prodigy' : 'AdamW8bit'},
		}),
	);
	return apply(
		base(listRows),
		{type: 'scan-started', now: t0},
		{type: 'files-found', files: entries.map(e => ({path: e.path, sizeBytes: e.sizeBytes, mtimeMs: e.mtimeMs})), now: t0 + 5},
		{type: 'entries-loaded', entries, now: t0 + 50},
		{type: 'scan-finished', now: t0 + 60},
	);
}

const names = (state: AppState): string[] => state.order.map(p => p.slice(folder.length + 1, -'.safetensors'.length));

test('found files appear as pending rows, newest first, before any header is read', () => {
	const state = apply(base(), {type: 'scan-started', now: t0}, {
		type: 'files-found',
		files: [
			{path: `${folder}/old.safetensors`, sizeBytes: 1, mtimeMs: t0},
			{path: `${folder}/sub/new.safetensors`, sizeBytes: 2, mtimeMs: t0 + 1000},
		],
		now: t0 + 12,
	});
	assert.deepEqual(names(state), ['sub/new', 'old']);
	assert.equal(state.rows.get(`${folder}/old.safetensors`)?.status, 'pending');
	assert.equal(state.rows.get(`${folder}/sub/new.safetensors`)?.folder, 'sub');
	assert.equal(state.scan.state, 'loading');
	assert.equal(state.scan.found, 2);
	assert.equal(state.scan.firstRowsMs, 12);
	assert.equal(selectedPath(state), `${folder}/sub/new.safetensors`);
});

test('loaded entries fill the rows; a failed file stays listed with its one-line reason', () => {
	let state = loaded();
	state = apply(state, {type: 'entries-loaded', entries: [fakeEntry(`${folder}/broken.safetensors`, {error: 'header length 9e15 exceeds the file size', mtime: t0 - 1})], now: t0 + 70});
	const broken = state.rows.get(`${folder}/broken.safetensors`)!;
	assert.equal(broken.status, 'error');
	assert.equal(broken.error, 'header length 9e15 exceeds the file size');
	assert.equal(names(state).at(-1), 'broken');
	assert.equal(state.rows.get(`${folder}/d.safetensors`)?.summary.rank, 32);
	assert.equal(state.rows.get(`${folder}/d.safetensors`)?.summary.epoch, 2);
	assert.equal(state.scan.loadedMs, 50);
});

test('moving clamps at both ends and the list scroll follows the selection', () => {
	let state = loaded(2);
	assert.equal(state.selected, 0);
	state = apply(state, {type: 'move', delta: -1});
	assert.equal(state.selected, 0);
	state = apply(state, {type: 'move', delta: 1}, {type: 'move', delta: 1});
	assert.equal(state.selected, 2);
	assert.equal(state.listScroll, 1, 'row 2 visible in a 2-row window');
	state = apply(state, {type: 'move-edge', edge: 'last'});
	assert.equal(state.selected, 4);
	assert.equal(state.listScroll, 3);
	state = apply(state, {type: 'move', delta: 10});
	assert.equal(state.selected, 4);
	state = apply(state, {type: 'move-page', direction: -1});
	assert.equal(state.selected, 3);
	state = apply(state, {type: 'move-edge', edge: 'first'});
	assert.equal(state.selected, 0);
	assert.equal(state.listScroll, 0);
});

test('sort cycles modified → name → size → rank → epoch with natural directions, and reverses', () => {
	let state = loaded();
	assert.deepEqual(names(state), ['e', 'd', 'c', 'b', 'a']);
	state = apply(state, {type: 'sort-next'});
	assert.equal(state.sort.key, 'name');
	assert.deepEqual(names(state), ['a', 'b', 'c', 'd', 'e']);
	state = apply(state, {type: 'sort-next'});
	assert.equal(state.sort.key, 'size');
	assert.deepEqual(names(state), ['a', 'b', 'c', 'd', 'e']);
	state = apply(state, {type: 'sort-next'});
	assert.equal(state.sort.key, 'rank');
	assert.deepEqual(names(state), ['b', 'd', 'a', 'c', 'e']);
	state = apply(state, {type: 'sort-next'});
	assert.equal(state.sort.key, 'epoch');
	assert.deepEqual(names(state), ['c', 'e', 'a', 'd', 'b']);
	state = apply(state, {type: 'sort-reverse'});
	assert.deepEqual(names(state), ['b', 'd', 'a', 'e', 'c']);
	state = apply(state, {type: 'sort-next'});
	assert.equal(state.sort.key, 'modified');
	assert.equal(state.sort.descending, true);
});

test('the selection stays on the same file when the order changes', () => {
	let state = apply(loaded(), {type: 'move', delta: 2});
	assert.equal(selectedPath(state), `${folder}/c.safetensors`);
	state = apply(state, {type: 'sort-next'});
	assert.equal(selectedPath(state), `${folder}/c.safetensors`);
	assert.equal(state.selected, 2);
});

test('rows without the sort value go last in both directions', () => {
	let state = apply(loaded(), {type: 'entries-loaded', entries: [fakeEntry(`${folder}/x.safetensors`, {rank: null, mtime: t0 + 999_999})], now: t0});
	state = apply(state, {type: 'sort-next'}, {type: 'sort-next'}, {type: 'sort-next'});
	assert.equal(state.sort.key, 'rank');
	assert.equal(names(state).at(-1), 'x');
	state = apply(state, {type: 'sort-reverse'});
	assert.equal(names(state).at(-1), 'x');
});

test('the filter narrows the list live and keeps or clamps the selection', () => {
	let state = apply(loaded(), {type: 'move', delta: 1});
	assert.equal(selectedPath(state), `${folder}/d.safetensors`);
	state = apply(state, {type: 'input-open', target: 'filter'}, {type: 'input-text', text: 'optimizer:prodigy'});
	assert.deepEqual(names(state), ['d', 'b']);
	assert.equal(selectedPath(state), `${folder}/d.safetensors`);
	state = apply(state, {type: 'input-text', text: 'rank>=32'});
	assert.deepEqual(names(state), ['d', 'b']);
	state = apply(state, {type: 'input-text', text: 'rank>=64'});
	assert.deepEqual(names(state), ['b']);
	assert.equal(state.selected, 0);
	state = apply(state, {type: 'input-commit'});
	assert.equal(topView(state), 'files');
	assert.equal(state.filter.source, 'rank>=64');
	// Esc in the input restores what was there before it opened.
	state = apply(state, {type: 'input-open', target: 'filter'}, {type: 'input-text', text: 'nothing-matches'});
	assert.equal(state.order.length, 0);
	state = apply(state, {type: 'input-cancel'});
	assert.equal(state.filter.source, 'rank>=64');
	assert.deepEqual(names(state), ['b']);
	state = apply(state, {type: 'filter-set', text: ''});
	assert.equal(state.order.length, 5);
});

test('marking moves down and feeds compare; compare explains what is missing', () => {
	let state = loaded();
	assert.deepEqual(compareChoice(state), {reason: 'compare: mark two files first (space)'});
	state = apply(state, {type: 'toggle-mark'});
	assert.deepEqual(state.marks, [`${folder}/e.safetensors`]);
	assert.equal(state.selected, 1, 'marking moves to the next row');
	// One mark plus a different selected file is a pair; oldest epoch first.
	assert.deepEqual(compareChoice(state).paths, [`${folder}/d.safetensors`, `${folder}/e.safetensors`]);
	state = apply(state, {type: 'toggle-mark'});
	assert.deepEqual(compareChoice(state).paths, [`${folder}/d.safetensors`, `${folder}/e.safetensors`]);
	state = apply(state, {type: 'toggle-mark'});
	// Three epochs (4, 2, 5) of the run "run": a series, by epoch.
	assert.deepEqual(compareChoice(state).paths, [`${folder}/d.safetensors`, `${folder}/e.safetensors`, `${folder}/c.safetensors`]);
	state = apply(state, {type: 'move', delta: -1}, {type: 'toggle-mark'});
	assert.deepEqual(state.marks, [`${folder}/e.safetensors`, `${folder}/d.safetensors`], 'a second press unmarks');
	state = apply(state, {type: 'clear-marks'});
	assert.deepEqual(state.marks, []);
});

test('compare refuses 3+ files of different runs, and failed files', () => {
	let state = apply(loaded(), {type: 'entries-loaded', entries: [fakeEntry(`${folder}/other.safetensors`, {metadata: {ss_output_name: 'other', ss_epoch: '9'}, mtime: t0 + 10 * 60_000})], now: t0});
	state = apply(state, {type: 'move-edge', edge: 'first'}, {type: 'toggle-mark'}, {type: 'toggle-mark'}, {type: 'toggle-mark'});
	assert.deepEqual(state.marks.length, 3);
	assert.match(compareChoice(state).reason ?? '', /one run/);
	state = apply(state, {type: 'entries-loaded', entries: [fakeEntry(`${folder}/bad.safetensors`, {error: 'truncated', mtime: t0 + 20 * 60_000})], now: t0}, {type: 'clear-marks'}, {type: 'move-edge', edge: 'first'}, {type: 'toggle-mark'});
	assert.match(compareChoice(state).reason ?? '', /failed to load/);
});

test('previous epoch of the selected file is found in its run', () => {
	let state = loaded();
	state = apply(state, {type: 'select-path', path: `${folder}/c.safetensors`});
	assert.deepEqual(previousEpochChoice(state).paths, [`${folder}/e.safetensors`, `${folder}/c.safetensors`]);
	state = apply(state, {type: 'select-path', path: `${folder}/b.safetensors`});
	assert.match(previousEpochChoice(state).reason ?? '', /no earlier epoch/);
});

test('view stack: push, no duplicates, pop never below the file list', () => {
	let state = loaded();
	assert.deepEqual(state.views, ['files']);
	state = apply(state, {type: 'push-view', view: 'detail'}, {type: 'push-view', view: 'help'}, {type: 'push-view', view: 'help'});
	assert.deepEqual(state.views, ['files', 'detail', 'help']);
	state = apply(state, {type: 'pop-view'}, {type: 'pop-view'}, {type: 'pop-view'});
	assert.deepEqual(state.views, ['files']);
	state = apply(state, {type: 'compare-open', paths: [`${folder}/a.safetensors`, `${folder}/b.safetensors`]});
	assert.equal(topView(state), 'compare');
	state = apply(state, {type: 'pop-view'});
	assert.equal(state.compare, null);
});

test('tabs switch by id and cycle both ways', () => {
	let state = loaded();
	state = apply(state, {type: 'tab-set', tab: 'tags'});
	assert.equal(state.detail.tab, 'tags');
	state = apply(state, {type: 'tab-cycle', delta: 1}, {type: 'tab-cycle', delta: 1});
	assert.equal(state.detail.tab, 'blocks');
	state = apply(state, {type: 'tab-cycle', delta: 1});
	assert.equal(state.detail.tab, 'overview');
	state = apply(state, {type: 'tab-cycle', delta: -1});
	assert.equal(state.detail.tab, 'blocks');
});

test('the detail cursor moves over the tab lines, clamps, and resets when the file changes', () => {
	const metadata: Record<string, string> = {};
	for (let i = 0; i < 30; i++) {
		metadata[`key_${String(i).padStart(2, '0')}`] = `value ${i}`;
	}

	let state = apply(base(), {type: 'entries-loaded', entries: [fakeEntry(`${folder}/m.safetensors`, {metadata, mtime: t0 + 1}), fakeEntry(`${folder}/n.safetensors`, {mtime: t0})], now: t0});
	state = apply(state, {type: 'tab-set', tab: 'metadata'});
	// Line 0 is the "30 keys" header; key lines start at 1, and the first step lands there.
	state = apply(state, {type: 'detail-move', delta: 1});
	assert.equal(state.detail.cursor.metadata, 1);
	state = apply(state, {type: 'detail-move', delta: 1});
	assert.equal(state.detail.cursor.metadata, 2);
	state = apply(state, {type: 'detail-edge', edge: 'last'});
	assert.equal(state.detail.cursor.metadata, 30);
	assert.equal(state.detail.scroll.metadata, 30 + 1 - 10, 'the last key line at the bottom of a 10-row window');
	state = apply(state, {type: 'detail-move', delta: 5});
	assert.equal(state.detail.cursor.metadata, 30);
	state = apply(state, {type: 'detail-edge', edge: 'first'}, {type: 'detail-page', direction: 1});
	assert.equal(state.detail.cursor.metadata, 10, 'a page is the window height minus one');
	state = apply(state, {type: 'move', delta: 1});
	assert.equal(state.detail.cursor.metadata, 0);
	assert.equal(state.detail.scroll.metadata, 0);
});

const someStats: LoraStats = {
	buckets: {unet: null, unetConv: null, te: null, te2: null},
	modules: [],
	blocks: [{name: 'IN01', blockOrder: 1, modules: 1, norm: 2, mean: 2}],
	unetNorm: 2,
	teNorm: 0,
	nonFiniteValues: 0,
	zeroModules: [],
	bytesRead: 10,
};

test('stats jobs: progress and result land in the slot of their file', () => {
	const state0 = loaded();
	const row = state0.rows.get(`${folder}/a.safetensors`)!;
	const key = statsKeyOf(row);
	let state = apply(state0, {type: 'stats-started', key, jobId: 'j1', path: row.path, label: 'stats a'});
	assert.equal(state.stats[key]?.state, 'running');
	state = apply(state, {type: 'job-progress', jobId: 'j1', done: 3, total: 10});
	assert.deepEqual([state.stats[key]?.done, state.stats[key]?.total], [3, 10]);
	state = apply(state, {type: 'job-result', jobId: 'j1', result: someStats});
	assert.equal(state.stats[key]?.state, 'done');
	assert.equal(state.stats[key]?.result, someStats);
	assert.equal(state.jobs['j1']?.state, 'done');
});

test('stats jobs: a late result of a replaced job is dropped; unknown jobs are ignored', () => {
	const state0 = loaded();
	const row = state0.rows.get(`${folder}/a.safetensors`)!;
	const key = statsKeyOf(row);
	let state = apply(state0, {type: 'stats-started', key, jobId: 'old', path: row.path, label: 'x'}, {type: 'stats-started', key, jobId: 'new', path: row.path, label: 'x'});
	assert.equal(state.jobs['old']?.state, 'cancelled');
	state = apply(state, {type: 'job-result', jobId: 'old', result: {...someStats, unetNorm: 999}});
	assert.equal(state.stats[key]?.state, 'running');
	assert.equal(state.stats[key]?.result, undefined);
	state = apply(state, {type: 'job-progress', jobId: 'old', done: 9, total: 9});
	assert.equal(state.stats[key]?.done, 0);
	const before = state;
	state = apply(state, {type: 'job-result', jobId: 'never-started', result: someStats});
	assert.equal(state, before);
	state = apply(state, {type: 'job-error', jobId: 'new', error: 'stats: engine stopped: signal SIGKILL'});
	assert.equal(state.stats[key]?.state, 'error');
	assert.equal(state.status?.text, 'stats: engine stopped: signal SIGKILL');
	assert.equal(state.status?.level, 'error');
});

test('watch: a new file gets the badge and is selected when the user is at the top', () => {
	let state = loaded();
	state = apply(state, {type: 'file-updated', entry: fakeEntry(`${folder}/f.safetensors`, {mtime: t0 + 3_600_000})});
	assert.equal(selectedPath(state), `${folder}/f.safetensors`);
	assert.equal(state.rows.get(`${folder}/f.safetensors`)?.isNew, true);
	// Moving away clears the badge of the file that was seen.
	state = apply(state, {type: 'move', delta: 1});
	assert.equal(state.rows.get(`${folder}/f.safetensors`)?.isNew, false);
	// Not at the top: the selection stays where the user is.
	state = apply(state, {type: 'file-updated', entry: fakeEntry(`${folder}/g.safetensors`, {mtime: t0 + 7_200_000})});
	assert.equal(selectedPath(state), `${folder}/e.safetensors`);
	assert.equal(state.rows.get(`${folder}/g.safetensors`)?.isNew, true);
	assert.equal(state.order[0], `${folder}/g.safetensors`);
});

test('watch: a rewritten file is updated in place; a deleted one leaves list and marks', () => {
	let state = apply(loaded(), {type: 'move', delta: 2}, {type: 'toggle-mark'});
	assert.deepEqual(state.marks, [`${folder}/c.safetensors`]);
	state = apply(state, {type: 'file-updated', entry: fakeEntry(`${folder}/c.safetensors`, {mtime: t0 + 2 * 60_000, rank: 12})});
	assert.equal(state.rows.size, 5);
	assert.equal(state.rows.get(`${folder}/c.safetensors`)?.summary.rank, 12);
	state = apply(state, {type: 'select-path', path: `${folder}/c.safetensors`}, {type: 'file-removed', path: `${folder}/c.safetensors`});
	assert.equal(state.rows.size, 4);
	assert.deepEqual(state.marks, []);
	assert.equal(selectedPath(state), `${folder}/b.safetensors`, 'selection moves to the next row');
});

test('status messages are set and cleared; logs are capped', () => {
	let state = apply(loaded(), {type: 'status', status: {text: 'x', level: 'warn'}});
	assert.equal(state.status?.text, 'x');
	state = apply(state, {type: 'status', status: null});
	assert.equal(state.status, null);
	for (let i = 0; i < 600; i++) {
		state = reducer(state, {type: 'log', line: {level: 'info', message: `line ${i}`, time: i}});
	}

	assert.equal(state.logs.length, 500);
	assert.equal(state.logs.at(-1)?.message, 'line 599');
});
