// Metadata editing as plain reducer and key-routing cases: e edits the value under the cursor, n adds
// a key (name, then value), d deletes after a y; each ends in one 'meta-save' request carrying the
// whole new metadata and the size/mtime the file had when read; nothing is saved for a file that
// changed since, and the text input keeps the text exactly (code points, cursor).
import assert from 'node:assert/strict';
import {test} from 'node:test';
import type {MetaSaveResult} from '../source/engine/jobs/meta-save.js';
import {routeKey, type Outcome} from '../source/keymap.js';
import type {FileHashes} from '../source/lora/hashes.js';
import {editLines, wrapForEdit} from '../source/state/edit-lines.js';
import {initialState, reducer, type Action} from '../source/state/reducer.js';
import {statsKeyOf, topView} from '../source/state/selectors.js';
import {toolStatusSegments} from '../source/state/tool-status.js';
import type {AppState} from '../source/state/types.js';
import {fakeEntry, unicodeEnv} from './helpers/entries.js';

const folder = '/data/loras';
const file = `${folder}/mira.safetensors`;
const t0 = 1_700_000_000_000;
const metadata = {ss_output_name: 'mira', ss_network_dim: '8', ss_tag_frequency: '{"1_mira": {"red hair": 3}}', zeta: 'last'};

function apply(state: AppState, ...actions: Action[]): AppState {
	return actions.reduce(reducer, state);
}

function press(state: AppState, name: string, text = name.length === 1 ? name : ''): AppState {
	const outcomes: Outcome[] = routeKey(state, {name, text}).outcomes;
	return apply(state, ...outcomes.filter((o): o is Action => !('kind' in o)));
}

function type(state: AppState, text: string): AppState {
	return press(state, text, text);
}

function reasonOf(state: AppState, name: string): string {
	return JSON.stringify(routeKey(state, {name, text: name}).outcomes);
}

/** The detail of mira on the Metadata tab, the cursor on `key`. */
function onKey(key: string | undefined): AppState {
	let state = apply(
		initialState(folder, unicodeEnv),
		{type: 'viewport', viewport: {listRows: 10, detailRows: 40, detailWidth: 80, bodyRows: 30, bodyWidth: 120}},
		{type: 'scan-started', now: t0},
		{type: 'entries-loaded', entries: [fakeEntry(file, {size: 4096, mtime: t0, metadata})], now: t0},
		{type: 'push-view', view: 'detail'},
		{type: 'tab-set', tab: 'metadata'},
	);
	if (key !== undefined) {
		// Down the lines until the cursor rests on the key.
		for (let i = 0; i < 20 && state.rows.get(file) && cursorKeyOf(state) !== key; i++) {
			state = press(state, 'j');
		}

		assert.equal(cursorKeyOf(state), key);
	}

	return state;
}

function cursorKeyOf(state: AppState): string | undefined {
	const disabled = reasonOf(state, 'e');
	if (disabled.includes('move the cursor')) {
		return undefined;
	}

	return apply(state, ...routeKey(state, {name: 'e', text: 'e'}).outcomes.filter((o): o is Action => !('kind' in o))).tools.edit?.key;
}

test('e opens the value under the cursor, prefilled with the raw value; only on the Metadata tab', () => {
	const state = onKey('ss_tag_frequency');
	const edit = press(state, 'e');
	assert.equal(topView(edit), 'edit-value');
	assert.equal(edit.tools.edit!.text, metadata.ss_tag_frequency);
	assert.equal(edit.tools.edit!.cursor, [...metadata.ss_tag_frequency].length);
	assert.deepEqual(edit.tools.edit!.stamp, {sizeBytes: 4096, mtimeMs: t0});
	assert.match(reasonOf(apply(state, {type: 'tab-set', tab: 'overview'}), 'e'), /edit: only in the Metadata tab/);
	assert.match(reasonOf(onKey(undefined), 'e'), /move the cursor to a key/);
});

test('typing edits at the cursor in code points; enter saves the whole new metadata with the read stamp', () => {
	let state = press(onKey('ss_output_name'), 'e');
	state = press(state, 'ctrl+u');
	state = type(state, 'mira😀v2');
	state = press(state, 'left');
	state = press(state, 'left');
	state = press(state, 'backspace');
	assert.equal(state.tools.edit!.text, 'mirav2');
	state = press(state, 'home');
	state = type(state, '_');
	assert.equal(state.tools.edit!.text, '_mirav2');
	state = press(state, 'end');
	// Control characters of a paste are dropped, not typed.
	state = type(state, '\u001B[31m!');
	assert.equal(state.tools.edit!.text, '_mirav2[31m!');
	state = press(state, 'return');
	assert.equal(topView(state), 'detail');
	const save = state.tools.save!;
	assert.equal(save.state, 'queued');
	assert.equal(save.path, file);
	assert.deepEqual(save.metadata, {...metadata, ss_output_name: '_mirav2[31m!'});
	assert.deepEqual(save.stamp, {sizeBytes: 4096, mtimeMs: t0});
	assert.match(save.what, /set ss_output_name/);
	// While it saves, further edits wait.
	assert.match(reasonOf(state, 'e'), /wait for the current save/);
	const running = apply(state, {type: 'tool-job-started', requestId: save.requestId, jobId: 'meta-save-1'}, {type: 'tool-job-progress', jobId: 'meta-save-1', progress: {done: 50, total: 100, bytesPerSecond: 5e6, etaSeconds: 1}});
	const line = (toolStatusSegments(running, 120) ?? []).map(s => s.text).join('');
	assert.match(line, /saving metadata of mira\.safetensors .* 50%  5\.0 MB\/s · ETA 1 s/);
	const done = apply(running, {type: 'tool-job-done', jobId: 'meta-save-1', result: {kind: 'meta-save', value: {path: file, hashesRecomputed: true, backupPath: null} as MetaSaveResult}});
	assert.match(done.status!.text, /saved mira\.safetensors: set ss_output_name \(sshs hashes recomputed\)/);
	const failed = apply(running, {type: 'tool-job-failed', jobId: 'meta-save-1', error: 'changed on disk since it was read (size or modification time differs)', errorName: 'FileChangedError'});
	assert.equal(failed.status!.level, 'error');
	assert.match(failed.status!.text, /^save failed: changed on disk/);
});

test('enter on an unchanged value saves nothing; esc cancels', () => {
	const unchanged = press(press(onKey('zeta'), 'e'), 'return');
	assert.equal(unchanged.tools.save, null);
	assert.match(unchanged.status!.text, /unchanged/);
	const cancelled = press(type(press(onKey('zeta'), 'e'), 'x'), 'escape');
	assert.equal(topView(cancelled), 'detail');
	assert.equal(cancelled.tools.edit, null);
	assert.equal(cancelled.tools.save, null);
});

test('n adds a key: its name, then its value; an existing name edits that key', () => {
	let state = press(onKey(undefined), 'n');
	assert.equal(state.tools.edit!.mode, 'new-key');
	state = press(state, 'return');
	assert.match(state.status!.text, /type its name/);
	state = type(state, ' my_note ');
	state = press(state, 'return');
	assert.equal(state.tools.edit!.mode, 'new-value');
	assert.equal(state.tools.edit!.key, 'my_note');
	state = type(state, 'hello');
	state = press(state, 'return');
	assert.deepEqual(state.tools.save!.metadata, {...metadata, my_note: 'hello'});
	assert.match(state.tools.save!.what, /added my_note/);

	let existing = type(press(onKey(undefined), 'n'), 'zeta');
	existing = press(existing, 'return');
	assert.equal(existing.tools.edit!.mode, 'value');
	assert.equal(existing.tools.edit!.text, 'last');
	assert.match(existing.status!.text, /exists/);
});

test('d asks first; y saves the metadata without the key, anything else keeps it', () => {
	const asked = press(onKey('ss_network_dim'), 'd');
	assert.equal(topView(asked), 'confirm');
	assert.match((toolStatusSegments(asked, 120) ?? []).map(s => s.text).join(''), /Delete the key ss_network_dim from mira\.safetensors\? y deletes/);
	const kept = press(asked, 'q');
	assert.equal(kept.tools.save, null);
	assert.equal(topView(kept), 'detail', 'q answers the question, it does not quit');
	assert.match(kept.status!.text, /nothing deleted/);
	const deleted = press(asked, 'y');
	const {ss_network_dim: _removed, ...rest} = metadata;
	assert.deepEqual(deleted.tools.save!.metadata, rest);
	assert.deepEqual(deleted.tools.save!.stamp, {sizeBytes: 4096, mtimeMs: t0});
});

test('a file that changed on disk since the edit began is not saved', () => {
	let state = type(press(press(onKey('zeta'), 'e'), 'ctrl+u'), 'new');
	state = apply(state, {type: 'file-updated', entry: fakeEntry(file, {size: 4096, mtime: t0 + 9000, metadata})});
	state = press(state, 'return');
	assert.equal(state.tools.save, null);
	assert.equal(state.status!.level, 'error');
	assert.match(state.status!.text, /changed on disk/);
});

test('the data hash is passed on when the hashes of this same file version are known', () => {
	let state = onKey('zeta');
	const key = statsKeyOf(state.rows.get(file)!);
	state = press(state, 'H');
	const hash = state.tools.hashes[key]!;
	state = apply(state, {type: 'tool-job-started', requestId: hash.requestId, jobId: 'hash-1'}, {
		type: 'tool-job-done',
		jobId: 'hash-1',
		result: {kind: 'hash', value: {sizeBytes: 4096, mtimeMs: t0, dataSha256: 'b'.repeat(64)} as FileHashes},
	});
	state = apply(state, {type: 'tab-set', tab: 'metadata'});
	state = press(type(press(press(state, 'e'), 'ctrl+u'), 'x'), 'return');
	assert.equal(state.tools.save!.knownDataSha256, 'b'.repeat(64));
});

test('the editor draws the raw value inert and wraps it around the cursor', () => {
	const raw = 'ab\u001B]0;title\u0007c\u202Ed\ne';
	const wrapped = wrapForEdit(raw, 3, 4, unicodeEnv);
	const drawn = wrapped.rows.map(cells => cells.map(c => c.text).join(''));
	assert.equal(drawn.join(''), 'ab?]0;title?c?d↵e', 'one visible stand-in per control character');
	assert.equal(wrapped.rows.flat().length, [...raw].length);
	assert.deepEqual([wrapped.cursorRow, wrapped.cursorCol], [0, 3]);
	const atEnd = wrapForEdit('abcd', 4, 4, unicodeEnv);
	assert.deepEqual([atEnd.cursorRow, atEnd.cursorCol], [1, 0], 'typing at the end of a full row continues on the next');
	const lines = editLines({mode: 'value', path: file, key: 'k\u001B[2J', text: raw, cursor: 0, original: raw, stamp: {sizeBytes: 1, mtimeMs: 1}}, 'mira.safetensors', 40, 12, unicodeEnv);
	const text = [lines.title, ...lines.lines.map(l => l.segments.map(s => s.text).join(''))].join('\n');
	assert.ok(!/[\u0000-\u0008\u000B-\u001F\u007F-\u009F\u202E]/.test(text), JSON.stringify(text));
});

test('↑/↓ move the cursor one wrapped row of the editor', () => {
	let state = press(onKey('ss_tag_frequency'), 'e');
	const length = [...metadata.ss_tag_frequency].length;
	state = press(state, 'home');
	state = press(state, 'down');
	// bodyWidth 120 minus the border: one row is 118 characters; the value is shorter, so the end.
	assert.equal(state.tools.edit!.cursor, Math.min(length, 118));
	state = press(state, 'up');
	assert.equal(state.tools.edit!.cursor, 0);
});
