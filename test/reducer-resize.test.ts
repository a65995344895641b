// The Resize view's reducer cases and keys as plain functions: opening (decomposition queued once and
// cached per file version), job ids and late results, cancel and retry, method and parameter steps,
// the plan figures against the test's own arithmetic on the singular values, writing with the
// overwrite confirmation, and hashes requested per file version.
import assert from 'node:assert/strict';
import path from 'node:path';
import {test} from 'node:test';
import type {ResizeWriteResult} from '../source/engine/jobs/resize-write.js';
import {routeKey, type Outcome} from '../source/keymap.js';
import type {FileHashes} from '../source/lora/hashes.js';
import {outputPath} from '../source/lora/resize-plan.js';
import type {DecompositionSummary, LoraModule, ModuleSpectrum} from '../source/lora/types.js';
import {initialState, reducer, type Action} from '../source/state/reducer.js';
import {resizeLines} from '../source/state/resize-lines.js';
import {resizePreview, stepParam} from '../source/state/resize-preview.js';
import {statsKeyOf, topView} from '../source/state/selectors.js';
import type {AppState} from '../source/state/types.js';
import {fakeEntry, unicodeEnv} from './helpers/entries.js';

const folder = '/data/loras';
const file = `${folder}/aria.safetensors`;
const t0 = 1_700_000_000_000;

function apply(state: AppState, ...actions: Action[]): AppState {
	return actions.reduce(reducer, state);
}

function actionsOf(outcomes: Outcome[]): Action[] {
	return outcomes.filter((o): o is Action => !('kind' in o));
}

function press(state: AppState, name: string, text = name.length === 1 ? name : ''): AppState {
	return apply(state, ...actionsOf(routeKey(state, {name, text}).outcomes));
}

/** Three linear modules with their designed spectra (raw, before the scale), rank 8, alpha 4. */
const designed: Record<string, {block: string; sv: number[]}> = {
	'lora_unet_down_blocks_0_attentions_0_proj_in': {block: 'IN01', sv: [4, 2, 1, 0.5, 0.25, 0.125, 0.0625, 0.03125]},
	'lora_unet_mid_block_attentions_0_proj_out': {block: 'M00', sv: [3, 2.5, 2, 1.5, 1, 0.5]},
	'lora_te_text_model_encoder_layers_0_mlp_fc1': {block: 'TE', sv: [1, 0.1, 0.01]},
};
const scale = 0.5;

function modules(): LoraModule[] {
	return Object.entries(designed).map(([name, {block}], index) => ({
		name,
		component: block === 'TE' ? 'te' : 'unet',
		algo: 'lora',
		kind: 'linear',
		rank: 8,
		alpha: 4,
		alphaSource: 'tensor',
		scale,
		outDim: 320,
		inDim: 320,
		kernel: null,
		block,
		blockOrder: index,
		tensors: {down: `${name}.lora_down.weight`, up: `${name}.lora_up.weight`, alpha: `${name}.alpha`},
		hasDora: false,
		needsBase: false,
	}) as LoraModule);
}

function summary(mtime = t0): DecompositionSummary {
	const spectra: ModuleSpectrum[] = modules().map(m => ({
		name: m.name,
		block: m.block,
		blockOrder: m.blockOrder,
		component: m.component,
		algo: m.algo,
		kind: m.kind,
		outDim: m.outDim,
		inDim: m.inDim,
		kernel: null,
		rank: 8,
		alpha: 4,
		scale,
		dtype: 'F16',
		singularValues: designed[m.name]!.sv.map(v => v * scale),
		resizable: true,
	}));
	return {path: file, sizeBytes: 5000, mtimeMs: mtime, device: 'cpu', modules: spectra, seconds: 0.1};
}

function loaded(extra: string[] = []): AppState {
	const entry = fakeEntry(file, {size: 5000, mtime: t0, rank: 8, alpha: 4});
	entry.model!.modules = modules();
	const others = extra.map(p => fakeEntry(p, {size: 100, mtime: t0 - 1000}));
	const all = [entry, ...others];
	return apply(
		initialState(folder, unicodeEnv),
		{type: 'viewport', viewport: {listRows: 10, detailRows: 10, detailWidth: 60, bodyRows: 30, bodyWidth: 120}},
		{type: 'scan-started', now: t0},
		{type: 'files-found', files: all.map(e => ({path: e.path, sizeBytes: e.sizeBytes, mtimeMs: e.mtimeMs})), now: t0},
		{type: 'entries-loaded', entries: all, now: t0},
		{type: 'scan-finished', now: t0},
		{type: 'select-path', path: file},
	);
}

function keyOf(state: AppState): string {
	return statsKeyOf(state.rows.get(file)!);
}

/** Opens the view and completes the decomposition as the engine would. */
function decomposed(state = loaded()): AppState {
	const open = press(state, 'r');
	const slot = open.tools.decompositions[keyOf(open)]!;
	return apply(open, {type: 'tool-job-started', requestId: slot.requestId, jobId: 'decompose-1'}, {type: 'tool-job-done', jobId: 'decompose-1', result: {kind: 'decompose', value: summary()}});
}

test('r opens the Resize view and queues one decomposition; reopening the same file version reuses it', () => {
	const open = press(loaded(), 'r');
	assert.equal(topView(open), 'resize');
	const session = open.tools.resize!;
	assert.equal(session.path, file);
	assert.equal(session.choice, 'rank');
	assert.equal(session.params.rank, 4, 'starts at half the largest rank');
	const slot = open.tools.decompositions[keyOf(open)]!;
	assert.equal(slot.state, 'queued');
	assert.equal(slot.kind, 'decompose');

	const done = decomposed();
	const closed = press(done, 'escape');
	assert.equal(topView(closed), 'files');
	const again = press(closed, 'r');
	assert.equal(topView(again), 'resize');
	assert.equal(again.tools.decompositions[keyOf(again)]!.state, 'done', 'cached: nothing queued again');
	assert.equal(again.tools.decompositions[keyOf(again)]!.requestId, done.tools.decompositions[keyOf(done)]!.requestId);
	assert.equal(resizePreview(again).state, 'ready');
});

test('a new version of the file (size or mtime) gets its own decomposition', () => {
	const done = press(decomposed(), 'escape');
	const entry = fakeEntry(file, {size: 5000, mtime: t0 + 5000, rank: 8, alpha: 4});
	entry.model!.modules = modules();
	const changed = apply(done, {type: 'file-updated', entry}, {type: 'select-path', path: file});
	const open = press(changed, 'r');
	assert.equal(open.tools.decompositions[statsKeyOf(open.rows.get(file)!)]!.state, 'queued');
});

test('job events: progress and result land in the slot with that job id; late and unknown ones are dropped', () => {
	const open = press(loaded(), 'r');
	const key = keyOf(open);
	const {requestId} = open.tools.decompositions[key]!;
	let state = apply(open, {type: 'tool-job-started', requestId, jobId: 'decompose-7'});
	assert.equal(state.tools.decompositions[key]!.state, 'running');
	state = apply(state, {type: 'tool-job-progress', jobId: 'decompose-7', progress: {done: 3, total: 10, bytesPerSecond: 2e6, etaSeconds: 4}});
	assert.deepEqual(state.tools.decompositions[key]!.progress, {done: 3, total: 10, bytesPerSecond: 2e6, etaSeconds: 4});
	const head = resizeLines(state, 118).head.map(l => l.segments.map(s => s.text).join(''));
	assert.ok(head.some(l => l.includes('3/10 modules') && l.includes('2.0 MB/s') && l.includes('ETA 4 s') && l.includes('esc cancels')), head.join('\n'));
	assert.equal(apply(state, {type: 'tool-job-progress', jobId: 'other', progress: {done: 9, total: 10}}), state);
	assert.equal(apply(state, {type: 'tool-job-done', jobId: 'other', result: {kind: 'decompose', value: summary()}}), state);
	state = apply(state, {type: 'tool-job-done', jobId: 'decompose-7', result: {kind: 'decompose', value: summary()}});
	assert.equal(state.tools.decompositions[key]!.state, 'done');
	assert.equal(apply(state, {type: 'tool-job-done', jobId: 'decompose-7', result: {kind: 'decompose', value: summary(t0 + 1)}}).tools.decompositions[key]!.result!.mtimeMs, t0);
});

test('esc cancels the running decomposition ("cancelled"), r retries, esc then goes back', () => {
	const open = press(loaded(), 'r');
	const key = keyOf(open);
	let state = apply(open, {type: 'tool-job-started', requestId: open.tools.decompositions[key]!.requestId, jobId: 'decompose-1'});
	assert.match(routeKey(state, {name: 'w', text: 'w'}).outcomes.map(o => JSON.stringify(o)).join(), /write: wait for the decomposition/);
	state = press(state, 'escape');
	assert.equal(topView(state), 'resize', 'esc cancels first, it does not leave');
	assert.equal(state.tools.decompositions[key]!.state, 'cancelling');
	state = apply(state, {type: 'tool-job-cancelled', jobId: 'decompose-1'});
	assert.equal(state.tools.decompositions[key]!.state, 'cancelled');
	assert.match(state.status?.text ?? '', /cancelled/);
	assert.ok(resizeLines(state, 118).head.some(l => l.segments.some(s => s.text === 'Decomposition cancelled')));
	const retried = press(state, 'r');
	assert.equal(retried.tools.decompositions[key]!.state, 'queued');
	assert.ok(retried.tools.decompositions[key]!.requestId > state.tools.decompositions[key]!.requestId);
	assert.equal(topView(press(state, 'escape')), 'files');
	// A queued job (not yet sent) is cancelled without the engine.
	const queued = press(press(loaded(), 'r'), 'escape');
	assert.equal(queued.tools.decompositions[keyOf(queued)]!.state, 'cancelled');
});

test('parameter steps: fine and coarse per method, clamped to the method range', () => {
	assert.equal(stepParam('rank', 4, 1, false, 8), 5);
	assert.equal(stepParam('rank', 4, 1, true, 32), 8);
	assert.equal(stepParam('rank', 12, 1, true, 32), 16);
	assert.equal(stepParam('rank', 12, -1, true, 32), 8);
	assert.equal(stepParam('rank', 8, 1, false, 8), 8, 'not above the largest rank');
	assert.equal(stepParam('rank', 1, -1, true, 8), 1);
	assert.equal(stepParam('sv_ratio', 4, 1, true, 8), 8);
	assert.equal(stepParam('sv_ratio', 1, -1, false, 8), 1);
	assert.equal(stepParam('sv_fro', 0.9, 1, false, 8), 0.91);
	assert.equal(stepParam('sv_fro', 0.98, 1, true, 8), 1);
	assert.equal(stepParam('sv_cumulative', 0.01, -1, false, 8), 0.01);
	assert.equal(stepParam('spn_lora', -1.2, 1, false, 8), -1.15);
	assert.equal(stepParam('fro_lora', -1.2, -1, true, 8), -1.45);

	let state = decomposed();
	state = press(state, 'right');
	assert.equal(state.tools.resize!.params.rank, 5);
	state = press(state, ']');
	assert.equal(state.tools.resize!.params.rank, 8);
	state = press(state, 'shift+left');
	assert.equal(state.tools.resize!.params.rank, 4);
	state = press(state, 'm');
	assert.equal(state.tools.resize!.choice, 'sv_ratio');
	state = press(state, 'left');
	assert.equal(state.tools.resize!.params.sv_ratio, 3);
	// m cycles the usable methods only (ckpt recipes need --base) and keeps each one's parameter.
	const seen: string[] = [];
	for (let i = 0; i < 6; i++) {
		seen.push(state.tools.resize!.choice);
		state = press(state, 'm');
	}

	assert.deepEqual(seen, ['sv_ratio', 'sv_fro', 'sv_cumulative', 'spn_lora', 'fro_lora', 'rank']);
	assert.equal(state.tools.resize!.params.sv_ratio, 3);
	assert.equal(press(state, 'M').tools.resize!.choice, 'rank');
});

test('the plan: kept rank and kept ‖ΔW‖ per block and in total match the arithmetic on the singular values', () => {
	let state = decomposed();
	state = press(state, 'right'); // rank 5
	const preview = resizePreview(state);
	assert.equal(preview.state, 'ready');
	if (preview.state !== 'ready') {
		return;
	}

	let kept2 = 0;
	let all2 = 0;
	let rankAfter = 0;
	for (const {sv} of Object.values(designed)) {
		const k = Math.min(5, sv.length);
		rankAfter += k;
		for (const [i, v] of sv.entries()) {
			all2 += (v * scale) ** 2;
			kept2 += i < k ? (v * scale) ** 2 : 0;
		}
	}

	assert.equal(preview.plan.totals.rankBefore, 24);
	assert.equal(preview.plan.totals.rankAfter, rankAfter);
	assert.ok(Math.abs(preview.plan.totals.froRetained - Math.sqrt(kept2 / all2)) < 1e-12);
	const in01 = designed['lora_unet_down_blocks_0_attentions_0_proj_in']!.sv;
	const in01Kept = Math.sqrt(in01.slice(0, 5).reduce((s, v) => s + (v * v), 0) / in01.reduce((s, v) => s + (v * v), 0));
	const text = [...resizeLines(state, 118).head, ...resizeLines(state, 118).body].map(l => l.segments.map(s => s.text).join(''));
	const blockLine = text.find(l => l.startsWith('IN01'))!;
	assert.ok(blockLine.includes(`${(in01Kept * 100).toFixed(2)}%`), blockLine);
	assert.ok(blockLine.includes('8.0 →') && blockLine.includes(' 5.0 '), blockLine);
	assert.ok(text.some(l => l.includes(`‖ΔW‖ ${(Math.sqrt(kept2 / all2) * 100).toFixed(2)}%`)), text.join('\n'));
	assert.ok(text.some(l => l.includes(`total rank 24 → ${rankAfter}`)));
	// TE keeps all 3 of its values at rank 5: nothing lost, so it is not among the worst.
	assert.ok(!preview.plan.worst.some(m => m.block === 'TE'));
	assert.ok(text.some(l => l.includes('rank    5') || l.includes('rank    3')), 'histogram rows');
});

test('w queues the write of outputPath(...) after the decomposition; an existing target asks first', () => {
	const target = outputPath(file, {method: 'rank', rank: 4});
	let state = decomposed();
	state = press(state, 'w');
	const write = state.tools.resize!.write!;
	assert.equal(write.state, 'queued');
	assert.equal(write.target, target);
	assert.deepEqual(write.method, {method: 'rank', rank: 4});
	assert.equal(write.overwrite, false);
	assert.match(JSON.stringify(routeKey(state, {name: 'w', text: 'w'}).outcomes), /already writing/);
	state = apply(state, {type: 'tool-job-started', requestId: write.requestId, jobId: 'resize-write-1'});
	const result = {outPath: target, sizes: {sourceBytes: 5000, outputBytes: 2500, estimatedBytes: 2400, compression: 2}} as ResizeWriteResult;
	state = apply(state, {type: 'tool-job-done', jobId: 'resize-write-1', result: {kind: 'resize-write', value: result}});
	assert.equal(state.tools.resize!.output, target);
	assert.match(state.status?.text ?? '', /wrote aria_rank4\.safetensors .*c compares/);
	// c: the output is not in the list yet.
	assert.match(JSON.stringify(routeKey(state, {name: 'c', text: 'c'}).outcomes), /waiting for the new file/);

	// With the target listed, w asks; anything but y keeps the file.
	const listed = press(decomposed(loaded([target])), 'w');
	assert.equal(topView(listed), 'confirm');
	assert.equal(listed.tools.resize!.write, null, 'nothing queued before the answer');
	const declined = press(listed, 'x');
	assert.equal(topView(declined), 'resize');
	assert.equal(declined.tools.resize!.write, null);
	assert.match(declined.status?.text ?? '', /not written/);
	const declinedByEsc = press(listed, 'escape');
	assert.equal(declinedByEsc.tools.resize!.write, null);
	const accepted = press(listed, 'y');
	assert.equal(topView(accepted), 'resize');
	assert.equal(accepted.tools.resize!.write!.overwrite, true);

	// The job refusing an existing file (created meanwhile) also turns into the question.
	let raced = press(decomposed(), 'w');
	raced = apply(raced, {type: 'tool-job-started', requestId: raced.tools.resize!.write!.requestId, jobId: 'resize-write-2'});
	raced = apply(raced, {type: 'tool-job-failed', jobId: 'resize-write-2', error: 'aria_rank4.safetensors already exists', errorName: 'TargetExistsError'});
	assert.equal(topView(raced), 'confirm');
	assert.match(raced.tools.confirm!.prompt, /aria_rank4\.safetensors already exists/);
});

test('c compares the written file with its source once it is listed; --out outside the folder says why not', () => {
	const target = outputPath(file, {method: 'rank', rank: 4});
	let state = press(decomposed(loaded([target])), 'w', 'w');
	state = press(state, 'y');
	const {requestId} = state.tools.resize!.write!;
	state = apply(
		state,
		{type: 'tool-job-started', requestId, jobId: 'w-1'},
		{type: 'tool-job-done', jobId: 'w-1', result: {kind: 'resize-write', value: {outPath: target, sizes: {sourceBytes: 1, outputBytes: 1, estimatedBytes: 1, compression: 1}} as ResizeWriteResult}},
	);
	const compared = press(state, 'c');
	assert.equal(topView(compared), 'compare');
	assert.deepEqual(compared.compare!.paths, [file, target]);

	const out = apply(loaded(), {type: 'tools-config', outDir: '/elsewhere'});
	let elsewhere = press(decomposed(out), 'w');
	assert.equal(elsewhere.tools.resize!.write!.target, path.join('/elsewhere', 'aria_rank4.safetensors'));
	elsewhere = apply(
		elsewhere,
		{type: 'tool-job-started', requestId: elsewhere.tools.resize!.write!.requestId, jobId: 'w-2'},
		{type: 'tool-job-done', jobId: 'w-2', result: {kind: 'resize-write', value: {outPath: '/elsewhere/aria_rank4.safetensors', sizes: {sourceBytes: 1, outputBytes: 1, estimatedBytes: 1, compression: 1}} as ResizeWriteResult}},
	);
	assert.match(JSON.stringify(routeKey(elsewhere, {name: 'c', text: 'c'}).outcomes), /outside the opened folder/);
});

test('esc during a write cancels it; the view says no file was written', () => {
	let state = press(decomposed(), 'w');
	state = apply(state, {type: 'tool-job-started', requestId: state.tools.resize!.write!.requestId, jobId: 'w-9'});
	state = press(state, 'escape');
	assert.equal(state.tools.resize!.write!.state, 'cancelling');
	state = apply(state, {type: 'tool-job-cancelled', jobId: 'w-9'});
	assert.match(state.status?.text ?? '', /no file written/);
	assert.ok(resizeLines(state, 118).head.some(l => l.segments.some(s => s.text.includes('no file written'))));
});

test('= types the parameter: a number in range applies, anything else is refused with a reason', () => {
	let state = press(decomposed(), '=');
	assert.equal(topView(state), 'edit-value');
	assert.equal(state.tools.edit!.text, '4');
	state = apply(state, {type: 'edit-clear'}, {type: 'edit-insert', text: '99'}, {type: 'edit-commit'});
	assert.match(state.status?.text ?? '', /between 1 and 8/);
	assert.equal(topView(state), 'edit-value', 'stays open to correct it');
	state = apply(state, {type: 'edit-clear'}, {type: 'edit-insert', text: 'abc'}, {type: 'edit-commit'});
	assert.match(state.status?.text ?? '', /not a number/);
	state = apply(state, {type: 'edit-clear'}, {type: 'edit-insert', text: '6'}, {type: 'edit-commit'});
	assert.equal(topView(state), 'resize');
	assert.equal(state.tools.resize!.params.rank, 6);
});

test('H queues hashes per file version, shows the Overview tab and never hashes a version twice', () => {
	let state = loaded();
	state = apply(state, {type: 'tab-set', tab: 'blocks'});
	state = press(state, 'H');
	assert.equal(state.detail.tab, 'overview');
	const key = keyOf(state);
	const slot = state.tools.hashes[key]!;
	assert.equal(slot.state, 'queued');
	assert.equal(press(state, 'H').tools.hashes[key]!.requestId, slot.requestId, 'already on its way');
	state = apply(state, {type: 'tool-job-started', requestId: slot.requestId, jobId: 'hash-1'}, {type: 'tool-job-done', jobId: 'hash-1', result: {kind: 'hash', value: {sha256: 'a'.repeat(64)} as FileHashes}});
	assert.equal(state.tools.hashes[key]!.state, 'done');
	assert.equal(press(state, 'H').tools.hashes[key], state.tools.hashes[key], 'cached');
	const failed = apply(press(loaded(), 'H'), {type: 'tool-job-refused', requestId: 1, error: 'hash: no engine: this session runs without one'});
	assert.equal(failed.tools.hashes[key]!.state, 'error');
	assert.match(failed.status?.text ?? '', /no engine/);
});

test('with --base, m reaches the checkpoint recipes; subspace asks for the projections, spn_ckpt then upgrades to σ_max and keeps them', () => {
	const withBase = (state: AppState): AppState => ({...state, tools: {...state.tools, basePath: '/ckpt/base.safetensors'}});
	let state = decomposed(withBase(loaded()));
	const key = keyOf(state);
	const seen: string[] = [];
	for (let i = 0; i < 6; i++) {
		state = press(state, 'm');
		seen.push(state.tools.resize!.choice);
	}

	assert.deepEqual(seen, ['sv_ratio', 'sv_fro', 'sv_cumulative', 'spn_lora', 'fro_lora', 'fro_ckpt']);
	let slot = state.tools.baseNorms[key]!;
	assert.deepEqual({state: slot.state, need: slot.need, subspace: slot.subspace}, {state: 'queued', need: 'frobenius', subspace: undefined});
	const froOnly = {lora_unet_mid_block_attentions_0_proj_out: {spectral: Number.NaN, frobenius: 10}};
	state = apply(state, {type: 'tool-job-started', requestId: slot.requestId, jobId: 'base-0'}, {type: 'tool-job-done', jobId: 'base-0', result: {kind: 'base-norms', value: {norms: froOnly, unmapped: [], unmappedReasons: {}, seconds: 0.1, cached: false, device: 'cpu'}}});
	assert.equal(resizePreview(state).state, 'ready');

	state = press(state, 'm');
	assert.equal(state.tools.resize!.choice, 'subspace');
	slot = state.tools.baseNorms[key]!;
	assert.deepEqual({state: slot.state, need: slot.need, subspace: slot.subspace}, {state: 'queued', need: 'frobenius', subspace: true}, 'norms without projections do not serve subspace');
	assert.deepEqual(resizePreview(state), {state: 'waiting', for: 'base'});

	const norms = {lora_unet_mid_block_attentions_0_proj_out: {spectral: Number.NaN, frobenius: 10, subspace: [1, 1, 1, 1, 1, 1]}};
	state = apply(state, {type: 'tool-job-started', requestId: slot.requestId, jobId: 'base-1'}, {type: 'tool-job-done', jobId: 'base-1', result: {kind: 'base-norms', value: {norms, unmapped: [], unmappedReasons: {}, seconds: 0.1, cached: false, device: 'cpu'}}});
	const preview = resizePreview(state);
	assert.equal(preview.state, 'ready');
	// subspace=1,thr=−1.2 on the mapped module: log10 σᵢ − log10 1 > −1.2 ⇔ σᵢ > 10^−1.2 (σ = designed × 0.5).
	const mid = designed['lora_unet_mid_block_attentions_0_proj_out']!.sv.filter(v => Math.log10(v * scale) > -1.2).length;
	assert.equal(preview.state === 'ready' ? preview.plan.modules.find(m => m.name === 'lora_unet_mid_block_attentions_0_proj_out')?.rankAfter : -1, mid);

	state = press(state, 'm');
	assert.equal(state.tools.resize!.choice, 'spn_ckpt');
	slot = state.tools.baseNorms[key]!;
	assert.equal(slot.state, 'queued', 'σ_max is not in a ‖W‖_F + subspace result');
	assert.deepEqual({need: slot.need, subspace: slot.subspace}, {need: 'both', subspace: true}, 'the upgrade keeps the projections');
});

test('at 80 columns the method line keeps the current choice on screen, with markers where choices are hidden', () => {
	let state = decomposed({...loaded(), tools: {...loaded().tools, basePath: '/ckpt/base.safetensors'}});
	for (let i = 0; i < 9; i++) {
		const text = resizeLines(state, 78).head.map(l => l.segments.map(s => s.text).join('')).find(l => l.startsWith('Method'))!;
		const choice = state.tools.resize!.choice;
		assert.ok(text.length <= 78, `${text.length} columns: ${text}`);
		assert.ok(text.includes(` ${choice} `), `${choice} missing from: ${text}`);
		assert.ok(text.includes('…'), `nine choices do not fit 78 columns: ${text}`);
		state = press(state, 'm');
	}

	const wide = resizeLines(state, 200).head.map(l => l.segments.map(s => s.text).join('')).find(l => l.startsWith('Method'))!;
	assert.ok(!wide.includes('…') && wide.includes(' rank ') && wide.includes(' spn_ckpt '), wide);
});
