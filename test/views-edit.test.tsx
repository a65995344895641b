/** @jsxRuntime automatic */
// Metadata editing and hashes in the rendered dashboard, with the real 'meta-save' and 'hash' jobs
// in-process: an edited value is in the file on disk with its tensor bytes unchanged (the test's own
// sha256 of the data area), sshs_model_hash recomputed; keys are added and deleted (after a y); a
// file changed on disk is not overwritten; the Overview's hashes equal an independent sha256 and the
// sshs status says verified / stale / bogus / absent; hostile values stay inert in the editor.
import assert from 'node:assert/strict';
import {createHash} from 'node:crypto';
import {readFile} from 'node:fs/promises';
import path from 'node:path';
import {after, before, test} from 'node:test';
import {Root} from '../source/app.js';
import {saveMetadata} from '../source/lora/edit.js';
import {emptySha256} from '../source/lora/hashes.js';
import {readHeader} from '../source/lora/safetensors.js';
import {generateSample} from '../source/lora/samples.js';
import type {TerminalEnv} from '../source/state/types.js';
import {writeSafetensorsAtomic} from '../source/lora/writer.js';
import {hostileFile, hostileStrings, sample, tempFolder} from './helpers/fixtures.js';
import {keys, plain, renderInTerminal, type Rendered} from './helpers/render.js';
import {toolEngine, type ToolEngine} from './helpers/tool-engine.js';

const env: TerminalEnv = {unicode: true, color: false};
let folder: {dir: string; remove: () => Promise<void>};
let mira: string;
let stale: string;
let bogus: string;
let hostile: string;
let changed: string;
const open: Rendered[] = [];

const sha256 = (bytes: Uint8Array): string => createHash('sha256').update(bytes).digest('hex');

/** The test's own split of a .safetensors file: 8-byte length, JSON header, data area. */
async function parts(file: string): Promise<{metadata: Record<string, string>; dataSha: string; fileSha: string}> {
	const bytes = await readFile(file);
	const length = Number(bytes.readBigUInt64LE(0));
	const header = JSON.parse(bytes.subarray(8, 8 + length).toString('utf8')) as {__metadata__?: Record<string, string>};
	return {metadata: header.__metadata__ ?? {}, dataSha: sha256(bytes.subarray(8 + length)), fileSha: sha256(bytes)};
}

async function withMetadata(file: string, change: (metadata: Record<string, string>) => void, seed: number): Promise<string> {
	const generated = await generateSample('sd15-epoch', {epoch: 1, epochs: 2, seed});
	change(generated.metadata);
	await writeSafetensorsAtomic(file, generated.tensors, generated.metadata, {overwrite: true});
	return file;
}

before(async () => {
	folder = await tempFolder('lorascope-edit-view-');
	mira = await sample(folder.dir, 'tqa.safetensors', 'sd15-epoch', {epoch: 1, epochs: 2});
	stale = await withMetadata(path.join(folder.dir, 'tqb-stale.safetensors'), m => {
		m['sshs_model_hash'] = 'ab'.repeat(32);
	}, 2);
	bogus = await withMetadata(path.join(folder.dir, 'tqc-bogus.safetensors'), m => {
		m['sshs_model_hash'] = emptySha256;
	}, 3);
	hostile = await hostileFile(folder.dir);
	changed = await withMetadata(path.join(folder.dir, 'tqd.safetensors'), () => undefined, 4);
});

after(async () => {
	for (const r of open) {
		r.unmount();
	}

	await folder.remove();
});

function start(columns = 120, rows = 40): Rendered & {engine: ToolEngine} {
	const engine = toolEngine();
	const rendered = renderInTerminal(<Root folder={folder.dir} env={env} engine={() => engine} watch={false} />, {columns, rows});
	open.push(rendered);
	return {...rendered, engine};
}

/** Filters the list down to one file and opens its detail. */
async function openFile(app: Rendered, name: string): Promise<void> {
	await app.waitFor(f => plain(f).includes('5 files') && !plain(f).includes('loading'));
	app.press('/', ...name, keys.enter);
	await app.waitFor(f => plain(f).includes('1 of 5 files'));
	app.press(keys.enter);
	await app.waitFor(f => plain(f).includes('esc back'));
}

/** Metadata tab, searched down to one key, cursor on it. */
async function onKey(app: Rendered, key: string): Promise<void> {
	app.press('2');
	await app.waitFor(f => /\d+ keys/.test(plain(f)));
	app.press('/', ...key, keys.enter);
	await app.waitFor(f => plain(f).includes(`match "${key}"`));
	app.press('j');
	await app.waitFor(f => plain(f).includes('e edit value'));
}

/** Pane lines of the right-hand pane, borders cut off. */
function paneLines(frame: string): string[] {
	return plain(frame)
		.split('\n')
		.map(l => {
			const split = l.indexOf('││');
			return (split >= 0 ? l.slice(split + 2) : l.replace(/^│/, '')).replace(/│$/, '');
		});
}

test('e edits a value: the file has it, its tensor bytes are unchanged and sshs_model_hash is recomputed', async () => {
	const beforeEdit = await parts(mira);
	const app = start();
	await openFile(app, 'tqa');
	await onKey(app, 'ss_output_name');
	app.press('e');
	let frame = await app.waitFor(f => plain(f).includes('Edit ss_output_name in tqa.safetensors'));
	assert.ok(plain(frame).includes(beforeEdit.metadata['ss_output_name']!), 'prefilled with the raw value');
	app.press(keys.ctrlU);
	app.press('renamed run');
	await app.waitFor(f => plain(f).includes('renamed run'));
	app.press(keys.enter);
	frame = await app.waitFor(f => plain(f).includes('saved tqa.safetensors: set ss_output_name'), 20_000);
	const afterEdit = await parts(mira);
	assert.equal(afterEdit.metadata['ss_output_name'], 'renamed run');
	assert.equal(afterEdit.dataSha, beforeEdit.dataSha, 'tensor bytes unchanged');
	assert.equal(afterEdit.metadata['sshs_model_hash'], afterEdit.dataSha);
	const {ss_output_name: _old, sshs_legacy_hash: _legacy, ...others} = beforeEdit.metadata;
	const {ss_output_name: _new, sshs_legacy_hash: _legacyNew, ...othersAfter} = afterEdit.metadata;
	assert.deepEqual(othersAfter, others, 'every other key kept');
	// The entry reloaded: the tab shows the new value.
	frame = await app.waitFor(f => paneLines(f).some(l => /^ss_output_name +renamed run/.test(l)));
	assert.equal(app.engine.started.filter(job => job.kind === 'meta-save').length, 1);
	app.unmount();
});

test('n adds a key, d deletes it after y; any other answer keeps it', async () => {
	const app = start();
	await openFile(app, 'tqa');
	app.press('2');
	await app.waitFor(f => /\d+ keys/.test(plain(f)));
	app.press('n');
	await app.waitFor(f => plain(f).includes('New metadata key in tqa.safetensors'));
	app.press('lorascope_note', keys.enter);
	await app.waitFor(f => plain(f).includes('New key lorascope_note'));
	app.press('checked by hand', keys.enter);
	await app.waitFor(f => plain(f).includes('saved tqa.safetensors: added lorascope_note'), 20_000);
	assert.equal((await parts(mira)).metadata['lorascope_note'], 'checked by hand');

	await onKey(app, 'lorascope_note');
	app.press('d');
	await app.waitFor(f => plain(f).includes('Delete the key lorascope_note from tqa.safetensors? y deletes'));
	app.press(keys.escape);
	await app.waitFor(f => plain(f).includes('nothing deleted'));
	assert.equal((await parts(mira)).metadata['lorascope_note'], 'checked by hand');
	app.press('d');
	await app.waitFor(f => plain(f).includes('y deletes'));
	app.press('y');
	await app.waitFor(f => plain(f).includes('saved tqa.safetensors: deleted lorascope_note'), 20_000);
	assert.equal((await parts(mira)).metadata['lorascope_note'], undefined);
});

test('a file changed on disk after it was read is not overwritten: one-line error in the status line', async () => {
	const app = start();
	await openFile(app, 'tqd');
	await onKey(app, 'ss_output_name');
	app.press('e');
	await app.waitFor(f => plain(f).includes('Edit ss_output_name'));
	app.press(keys.ctrlU, 'from the dashboard');
	// Someone else edits the file meanwhile (watch is off: the list still has the old version).
	const read = await readHeader(changed);
	await saveMetadata(changed, {...read.metadata, ss_output_name: 'from elsewhere'}, {expected: {sizeBytes: read.sizeBytes, mtimeMs: read.mtimeMs}});
	app.press(keys.enter);
	const frame = await app.waitFor(f => plain(f).includes('save failed:'), 20_000);
	const status = plain(frame).split('\n').find(l => l.includes('save failed:'))!;
	assert.match(status, /changed/);
	assert.equal((await parts(changed)).metadata['ss_output_name'], 'from elsewhere');
});

test('H: the Overview shows SHA-256, AutoV2 and the tensor-data hash, and the sshs status', async () => {
	for (const [name, file, status] of [['tqa', mira, 'verified'], ['tqb-stale', stale, 'stale'], ['tqc-bogus', bogus, 'bogus'], ['hostile', hostile, 'absent']] as const) {
		const app = start();
		await openFile(app, name);
		app.press('H');
		const frame = await app.waitFor(f => plain(f).includes('sshs_model_hash  '), 20_000);
		const expected = await parts(file);
		const lines = paneLines(frame);
		const at = lines.findIndex(l => l.startsWith('SHA-256 (whole file)'));
		const hex = lines.slice(at, at + 3).join('').replace('SHA-256 (whole file)', '').replace(/AutoV2.*/, '').replaceAll(/\s/g, '');
		assert.ok(hex.startsWith(expected.fileSha), `${name}: ${hex} vs ${expected.fileSha}`);
		assert.ok(lines.some(l => l.startsWith('AutoV2') && l.includes(expected.fileSha.slice(0, 10))), name);
		const dataAt = lines.findIndex(l => l.startsWith('Tensor data'));
		assert.ok(lines.slice(dataAt, dataAt + 3).join('').replaceAll(/\s/g, '').includes(expected.dataSha), name);
		assert.ok(lines.some(l => new RegExp(`^sshs_model_hash +${status}`).test(l)), `${name}: ${status}\n${lines.join('\n')}`);
		// Cached per file version: H again runs nothing.
		app.press('H');
		assert.equal(app.engine.started.filter(job => job.kind === 'hash').length, 1);
		app.unmount();
	}
});

test('80x24: a hostile value is drawn inert in the editor', async () => {
	const app = start(80, 24);
	await openFile(app, 'hostile');
	await onKey(app, 'ss_training_comment');
	app.press('e');
	const frame = await app.waitFor(f => plain(f).includes('Edit ss_training_comment'));
	const text = plain(frame);
	assert.ok(!/[\u0000-\u0009\u000B-\u001F\u007F-\u009F]/.test(text), JSON.stringify(text));
	assert.ok(!text.includes(hostileStrings.link));
	const lines = text.split('\n');
	assert.equal(lines.length, 23);
	assert.ok(lines.every(l => l.length <= 80));
	app.press(keys.escape);
	await app.waitFor(f => plain(f).includes('e edit value'));
});
