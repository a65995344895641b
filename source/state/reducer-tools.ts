// The pure reducer of the tools slice (issues 4 and 5): the Resize view (with the base norms of its
// checkpoint recipes), the metadata editor and its confirmations, file hashes, and the engine jobs
// behind them. Like reducer.ts: no I/O and no clocks;
// jobs are requested by putting a 'queued' slot in state (use-tool-jobs starts it), and results whose
// job id no longer matches their slot are dropped.
import path from 'node:path';
import type {BaseNormsResult} from '../engine/jobs/base-norms.js';
import type {MetaSaveResult} from '../engine/jobs/meta-save.js';
import type {ResizeWriteResult} from '../engine/jobs/resize-write.js';
import {removeKey, setKey, type ReadStamp} from '../lora/edit.js';
import type {FileHashes} from '../lora/hashes.js';
import {validateMethod} from '../lora/resize-plan.js';
import type {DecompositionSummary} from '../lora/types.js';
import {formatBytes} from './format.js';
import {resizeMaxScroll} from './resize-lines.js';
import {
	baseNeedOf,
	baseSubspaceOf,
	baseSlotServes,
	currentParam,
	defaultParams,
	defaultSelectors,
	defaultSizes,
	enabledChoices,
	isRecipeChoice,
	keptFactorMiB,
	needsBase,
	paramKindOf,
	parseParam,
	resizePreview,
	sessionMethod,
	sessionTarget,
	stepParam,
	withParam,
} from './resize-preview.js';
import {baseView, statsKeyOf} from './selectors.js';
import type {
	BaseNormsSlot,
	DecompositionSlot,
	EditMode,
	EditState,
	HashSlot,
	JobProgress,
	JobSlot,
	ResizeSession,
	SaveSlot,
	ToolRequest,
	ToolsState,
	WriteSlot,
} from './tools-types.js';
import type {AppState, FileRow, StatusMessage, ViewId} from './types.js';

export type ToolResult =
	| {kind: 'decompose'; value: DecompositionSummary}
	| {kind: 'base-norms'; value: BaseNormsResult}
	| {kind: 'hash'; value: FileHashes}
	| {kind: 'resize-write'; value: ResizeWriteResult}
	| {kind: 'meta-save'; value: MetaSaveResult};

export type ToolAction =
	| ToolRequest
	/** `--out` and `--base` (a missing basePath leaves the one set before). */
	| {type: 'tools-config'; outDir: string | null; basePath?: string | null}
	| {type: 'resize-open'; path: string}
	| {type: 'resize-close'}
	/** Esc in the Resize view: cancels the running job, or closes the view when none runs. */
	| {type: 'resize-escape'}
	| {type: 'resize-choice'; delta: number}
	| {type: 'resize-step'; direction: 1 | -1; coarse: boolean}
	| {type: 'resize-param'; value: number}
	/** An elias recipe: switch between selecting by thr (log10 score) and by size (MiB). */
	| {type: 'resize-selector'}
	| {type: 'resize-scroll'; delta: number}
	| {type: 'resize-retry'}
	| {type: 'hash-request'; path: string}
	| {type: 'tool-job-started'; requestId: number; jobId: string}
	/** The job could not be started (no engine able to run it). */
	| {type: 'tool-job-refused'; requestId: number; error: string}
	| {type: 'tool-job-progress'; jobId: string; progress: JobProgress}
	| {type: 'tool-job-done'; jobId: string; result: ToolResult}
	| {type: 'tool-job-failed'; jobId: string; error: string; errorName?: string}
	| {type: 'tool-job-cancelled'; jobId: string}
	| {type: 'edit-open'; mode: 'value' | 'new-key'; path: string; key?: string}
	| {type: 'edit-param-open'}
	| {type: 'edit-insert'; text: string}
	| {type: 'edit-backspace'}
	/** up/down move one wrapped row (the editor is as wide as the body inside its border). */
	| {type: 'edit-cursor'; to: 'left' | 'right' | 'home' | 'end' | 'up' | 'down'}
	| {type: 'edit-clear'}
	| {type: 'edit-commit'}
	| {type: 'edit-cancel'}
	| {type: 'meta-delete-ask'; path: string; key: string}
	| {type: 'confirm-answer'; yes: boolean};

export type AnySlot = DecompositionSlot | BaseNormsSlot | HashSlot | WriteSlot | SaveSlot;

// ---- helpers ----------------------------------------------------------------------------------

function status(state: AppState, text: string, level: StatusMessage['level']): AppState {
	return {...state, status: {text, level}};
}

function withTools(state: AppState, patch: Partial<ToolsState>): AppState {
	return {...state, tools: {...state.tools, ...patch}};
}

/** Puts a view on top (once: one lower in the stack comes up), as reducer.ts's pushView does. */
function showView(state: AppState, view: ViewId): AppState {
	if (state.views.at(-1) === view) {
		return state;
	}

	return {...state, views: [...state.views.filter(v => v !== view), view]};
}

/** Removes a view, and any overlay (help, input) left above it. */
function hideView(state: AppState, view: ViewId): AppState {
	const index = state.views.lastIndexOf(view);
	if (index <= 0) {
		return state;
	}

	return {...state, views: state.views.slice(0, index)};
}

function nextRequest(state: AppState): [AppState, number] {
	const id = state.tools.nextRequest;
	return [withTools(state, {nextRequest: id + 1}), id];
}

function isActive(slot: JobSlot<unknown> | null | undefined): boolean {
	return slot !== null && slot !== undefined && (slot.state === 'queued' || slot.state === 'running' || slot.state === 'cancelling');
}

/** Started and not finished: the only states a job event may change. */
function isRunning(slot: JobSlot<unknown>): boolean {
	return slot.state === 'running' || slot.state === 'cancelling';
}

/** Every job slot, for lookups by request or job id. */
export function allSlots(tools: ToolsState): AnySlot[] {
	const slots: AnySlot[] = [...Object.values(tools.decompositions), ...Object.values(tools.baseNorms), ...Object.values(tools.hashes)];
	if (tools.resize?.write) {
		slots.push(tools.resize.write);
	}

	if (tools.save) {
		slots.push(tools.save);
	}

	return slots;
}

/** Replaces the slot `match` finds with `update(slot)`; unchanged state when none matches. */
function updateSlot(state: AppState, match: (slot: AnySlot) => boolean, update: (slot: AnySlot) => AnySlot): {state: AppState; before?: AnySlot; after?: AnySlot} {
	const {tools} = state;
	for (const [key, slot] of Object.entries(tools.decompositions)) {
		if (match(slot)) {
			const after = update(slot) as DecompositionSlot;
			return {state: withTools(state, {decompositions: {...tools.decompositions, [key]: after}}), before: slot, after};
		}
	}

	for (const [key, slot] of Object.entries(tools.baseNorms)) {
		if (match(slot)) {
			const after = update(slot) as BaseNormsSlot;
			return {state: withTools(state, {baseNorms: {...tools.baseNorms, [key]: after}}), before: slot, after};
		}
	}

	for (const [key, slot] of Object.entries(tools.hashes)) {
		if (match(slot)) {
			const after = update(slot) as HashSlot;
			return {state: withTools(state, {hashes: {...tools.hashes, [key]: after}}), before: slot, after};
		}
	}

	if (tools.resize?.write && match(tools.resize.write)) {
		const after = update(tools.resize.write) as WriteSlot;
		return {state: withTools(state, {resize: {...tools.resize, write: after}}), before: tools.resize.write, after};
	}

	if (tools.save && match(tools.save)) {
		const after = update(tools.save) as SaveSlot;
		return {state: withTools(state, {save: after}), before: tools.save, after};
	}

	return {state};
}

function rowStamp(row: FileRow | undefined): ReadStamp | undefined {
	const header = row?.entry?.header;
	return header ? {sizeBytes: header.sizeBytes, mtimeMs: header.mtimeMs} : undefined;
}

function sameStamp(a: ReadStamp | undefined, b: ReadStamp | undefined): boolean {
	return a !== undefined && b !== undefined && a.sizeBytes === b.sizeBytes && a.mtimeMs === b.mtimeMs;
}

function baseName(file: string): string {
	return path.basename(file);
}

// ---- resize -----------------------------------------------------------------------------------

function maxRankOf(row: FileRow): number {
	let max = 0;
	for (const module of row.entry?.model?.modules ?? []) {
		max = Math.max(max, module.rank ?? 0);
	}

	return Math.max(1, max);
}

function queueDecomposition(state: AppState, key: string, filePath: string): AppState {
	const [next, requestId] = nextRequest(state);
	const slot: DecompositionSlot = {kind: 'decompose', requestId, state: 'queued', path: filePath};
	return withTools(next, {decompositions: {...next.tools.decompositions, [key]: slot}});
}

/**
 * Queues the base norms of the session's file version when its method is a checkpoint recipe and
 * none that serve it are cached or on their way (a failed or cancelled run is tried again). A
 * running ‖W‖_F-only job is left to finish when spn_ckpt is picked: its figures land in the
 * engine's disk cache, and its completion queues the σ_max run (see jobDone), which reuses them.
 */
function ensureBaseNorms(state: AppState): AppState {
	const session = state.tools.resize;
	const {basePath} = state.tools;
	if (!session || !basePath || !needsBase(session.choice)) {
		return state;
	}

	const slot = state.tools.baseNorms[session.key];
	if (slot && slot.basePath === basePath && isActive(slot)) {
		return state;
	}

	if (slot?.state === 'done' && baseSlotServes(slot, session.choice, basePath)) {
		return state;
	}

	// A result is upgraded, never downgraded: 'both' serves fro_ckpt too, and norms with subspace
	// projections serve the other recipes (the engine reuses its disk-cached norms for the rest).
	const kept = slot?.state === 'done' && slot.basePath === basePath ? slot : undefined;
	const need = kept?.need === 'both' ? 'both' : baseNeedOf(session.choice);
	const subspace = kept?.subspace === true || baseSubspaceOf(session.choice);
	return queueBaseNorms(state, session.key, session.path, basePath, need, subspace);
}

function queueBaseNorms(state: AppState, key: string, filePath: string, basePath: string, need: BaseNormsSlot['need'], subspace: boolean): AppState {
	const [next, requestId] = nextRequest(state);
	const slot: BaseNormsSlot = {kind: 'base-norms', requestId, state: 'queued', path: filePath, basePath, need, ...(subspace ? {subspace} : {})};
	return withTools(next, {baseNorms: {...next.tools.baseNorms, [key]: slot}});
}

function openResize(state: AppState, filePath: string): AppState {
	const row = state.rows.get(filePath);
	if (row?.status !== 'ok' || !row.entry?.model) {
		return status(state, 'resize: select a file that loaded', 'warn');
	}

	const key = statsKeyOf(row);
	const maxRank = maxRankOf(row);
	const previous = state.tools.resize;
	// Reopening the same file keeps the method and parameters the user had.
	const session: ResizeSession = previous?.path === filePath
		? {...previous, key, maxRank, scroll: 0, write: isActive(previous.write) ? previous.write : null}
		: {
			path: filePath,
			key,
			choice: 'rank',
			params: defaultParams(maxRank),
			selectors: defaultSelectors(),
			sizes: defaultSizes(),
			maxRank,
			scroll: 0,
			write: null,
			output: null,
		};
	let next = withTools(state, {resize: session});
	const slot = next.tools.decompositions[key];
	if (!slot || slot.state === 'error' || slot.state === 'cancelled') {
		next = queueDecomposition(next, key, filePath);
	}

	return showView(ensureBaseNorms(next), 'resize');
}

function updateSession(state: AppState, update: (session: ResizeSession) => ResizeSession): AppState {
	const session = state.tools.resize;
	return session ? withTools(state, {resize: update(session)}) : state;
}

function cancelSlot(state: AppState, slot: AnySlot): AppState {
	if (slot.state === 'queued') {
		// Not started yet: nothing to tell the engine.
		return updateSlot(state, s => s === slot, s => ({...s, state: 'cancelled'})).state;
	}

	return slot.state === 'running' ? updateSlot(state, s => s === slot, s => ({...s, state: 'cancelling'})).state : state;
}

function escapeResize(state: AppState): AppState {
	const session = state.tools.resize;
	if (!session) {
		return hideView(state, 'resize');
	}

	const decomposition = state.tools.decompositions[session.key];
	if (decomposition && isActive(decomposition)) {
		return cancelSlot(state, decomposition);
	}

	const base = state.tools.baseNorms[session.key];
	if (base && isActive(base)) {
		return cancelSlot(state, base);
	}

	if (session.write && isActive(session.write)) {
		return cancelSlot(state, session.write);
	}

	return hideView(state, 'resize');
}

function requestWrite(state: AppState, overwrite: boolean): AppState {
	const session = state.tools.resize;
	if (!session) {
		return state;
	}

	if (state.tools.decompositions[session.key]?.state !== 'done') {
		return status(state, 'write: wait for the decomposition', 'warn');
	}

	if (isActive(session.write)) {
		return status(state, 'write: already writing', 'warn');
	}

	const method = sessionMethod(session);
	// A checkpoint recipe writes with the norms the preview planned with, and names their checkpoint.
	let base: {norms: BaseNormsResult['norms']; path: string} | undefined;
	if (needsBase(session.choice)) {
		const slot = state.tools.baseNorms[session.key];
		if (slot?.state !== 'done' || !slot.result || !baseSlotServes(slot, session.choice, state.tools.basePath)) {
			return status(state, 'write: wait for the base norms', 'warn');
		}

		base = {norms: slot.result.norms, path: slot.basePath};
	}

	try {
		validateMethod(method, base ? {base: base.norms} : {});
	} catch (error) {
		return status(state, `write: ${error instanceof Error ? error.message : String(error)}`, 'error');
	}

	const target = sessionTarget(session, state.tools);
	if (!overwrite && state.rows.has(target)) {
		return askOverwrite(state, target);
	}

	const [next, requestId] = nextRequest(state);
	const write: WriteSlot = {kind: 'resize-write', requestId, state: 'queued', target, method, overwrite, ...(base ? {baseNorms: base.norms, basePath: base.path} : {})};
	return updateSession(next, s => ({...s, write}));
}

function askOverwrite(state: AppState, target: string): AppState {
	const confirm = {
		prompt: `${baseName(target)} already exists. Overwrite it? y overwrites, any other key keeps it`,
		yes: {type: 'resize-write', overwrite: true} as const,
		declined: `not written: ${baseName(target)} is kept`,
	};
	return showView(withTools(state, {confirm}), 'confirm');
}

/**
 * thr ⇄ size for the current recipe. The first switch to size starts at the size of the factor
 * tensors the thr plan keeps, so the preview barely moves and ←/→ then trade size for quality.
 */
function toggleSelector(state: AppState): AppState {
	const session = state.tools.resize;
	if (!session) {
		return state;
	}

	const {choice} = session;
	if (!isRecipeChoice(choice)) {
		return status(state, 'size: only the elias recipes (spn_lora, fro_lora, fro_ckpt, spn_ckpt, subspace) select by size', 'warn');
	}

	const selector = session.selectors[choice] === 'size' ? 'thr' : 'size';
	let size = session.sizes[choice];
	if (selector === 'size' && size === null) {
		const preview = resizePreview(state);
		const fileBytes = state.rows.get(session.path)?.entry?.header?.sizeBytes ?? 2 * 1024 * 1024;
		size = preview.state === 'ready' ? keptFactorMiB(preview.plan) : Math.max(0.01, Number((fileBytes / 2 / 1024 / 1024).toPrecision(3)));
	}

	return updateSession(state, s => ({...s, selectors: {...s.selectors, [choice]: selector}, sizes: {...s.sizes, [choice]: size}}));
}

// ---- metadata editing -------------------------------------------------------------------------

const codePoints = (text: string): string[] => [...text];

function openEdit(state: AppState, mode: 'value' | 'new-key', filePath: string, key: string | undefined): AppState {
	const row = state.rows.get(filePath);
	const stamp = rowStamp(row);
	const metadata = row?.entry?.header?.metadata;
	if (!stamp || !metadata || row?.status !== 'ok') {
		return status(state, 'edit: the file has not loaded', 'warn');
	}

	if (isActive(state.tools.save)) {
		return status(state, 'edit: wait for the current save to finish', 'warn');
	}

	if (mode === 'value' && (key === undefined || !(key in metadata))) {
		return status(state, 'edit: move the cursor to a metadata key', 'warn');
	}

	const text = mode === 'value' ? metadata[key!] ?? '' : '';
	const edit: EditState = {mode, path: filePath, key: mode === 'value' ? key! : '', text, cursor: codePoints(text).length, original: text, stamp};
	return showView(withTools(state, {edit}), 'edit-value');
}

function updateEdit(state: AppState, update: (edit: EditState) => EditState): AppState {
	const {edit} = state.tools;
	return edit ? withTools(state, {edit: update(edit)}) : state;
}

function closeEdit(state: AppState): AppState {
	return hideView(withTools(state, {edit: null}), 'edit-value');
}

function requestSave(state: AppState, request: Extract<ToolRequest, {type: 'meta-save-request'}>): AppState {
	if (isActive(state.tools.save)) {
		return status(state, 'save: wait for the current save to finish', 'warn');
	}

	const row = state.rows.get(request.path);
	const hashes = row ? state.tools.hashes[statsKeyOf(row)] : undefined;
	const known = hashes?.result && sameStamp({sizeBytes: hashes.result.sizeBytes, mtimeMs: hashes.result.mtimeMs}, request.stamp) ? hashes.result.dataSha256 : undefined;
	const [next, requestId] = nextRequest(state);
	const save: SaveSlot = {kind: 'meta-save', requestId, state: 'queued', path: request.path, what: request.what, metadata: request.metadata, stamp: request.stamp};
	if (known !== undefined) {
		save.knownDataSha256 = known;
	}

	return withTools(next, {save});
}

/** The metadata the edit started from, if the file in the list is still that version. */
function editBase(state: AppState, edit: EditState): Record<string, string> | undefined {
	const row = state.rows.get(edit.path);
	return sameStamp(rowStamp(row), edit.stamp) ? row?.entry?.header?.metadata : undefined;
}

function commitEdit(state: AppState): AppState {
	const {edit} = state.tools;
	if (!edit) {
		return state;
	}

	if (edit.mode === 'resize-param') {
		const session = state.tools.resize;
		if (!session) {
			return closeEdit(state);
		}

		const parsed = parseParam(paramKindOf(session), edit.text, session.maxRank);
		if ('error' in parsed) {
			return status(state, parsed.error, 'error');
		}

		return closeEdit(updateSession(state, s => withParam(s, parsed.value)));
	}

	const metadata = editBase(state, edit);
	if (!metadata) {
		return status(closeEdit(state), 'edit: the file changed on disk since the edit began; nothing saved (open the edit again)', 'error');
	}

	if (edit.mode === 'new-key') {
		const key = edit.text.trim();
		if (key === '') {
			return status(state, 'new key: type its name', 'warn');
		}

		if (key === '__metadata__') {
			return status(state, 'new key: __metadata__ is reserved', 'error');
		}

		const exists = key in metadata;
		const value = exists ? metadata[key] ?? '' : '';
		const mode: EditMode = exists ? 'value' : 'new-value';
		const next = updateEdit(state, e => ({...e, mode, key, text: value, original: value, cursor: codePoints(value).length}));
		return exists ? status(next, `${key.slice(0, 60)} exists: editing its value`, 'info') : next;
	}

	if (edit.mode === 'value' && edit.text === edit.original) {
		return status(closeEdit(state), 'unchanged: nothing saved', 'info');
	}

	let updated: Record<string, string>;
	try {
		updated = setKey(metadata, edit.key, edit.text);
	} catch (error) {
		return status(state, error instanceof Error ? error.message : String(error), 'error');
	}

	const what = `${edit.mode === 'new-value' ? 'added' : 'set'} ${edit.key}`;
	return requestSave(closeEdit(state), {type: 'meta-save-request', path: edit.path, metadata: updated, stamp: edit.stamp, what});
}

function askDelete(state: AppState, filePath: string, key: string): AppState {
	const row = state.rows.get(filePath);
	const stamp = rowStamp(row);
	const metadata = row?.entry?.header?.metadata;
	if (!stamp || !metadata || !(key in metadata)) {
		return status(state, 'delete: move the cursor to a metadata key', 'warn');
	}

	if (isActive(state.tools.save)) {
		return status(state, 'delete: wait for the current save to finish', 'warn');
	}

	const confirm = {
		prompt: `Delete the key ${key} from ${baseName(filePath)}? y deletes, any other key keeps it`,
		yes: {type: 'meta-save-request', path: filePath, metadata: removeKey(metadata, key), stamp, what: `deleted ${key}`} as const,
		declined: 'nothing deleted',
	};
	return showView(withTools(state, {confirm}), 'confirm');
}

// ---- job events -------------------------------------------------------------------------------

function jobDone(state: AppState, jobId: string, result: ToolResult): AppState {
	const {state: next, before} = updateSlot(state, slot => slot.jobId === jobId && isRunning(slot), slot => ({...slot, state: 'done', result: result.value} as AnySlot));
	if (!before) {
		return state; // A late result of a replaced or cancelled job.
	}

	switch (result.kind) {
		case 'base-norms': {
			// spn_ckpt (or subspace) picked while a narrower run was going: now ask for the rest.
			return ensureBaseNorms(next);
		}

		case 'resize-write': {
			const written = result.value;
			const withOutput = updateSession(next, s => ({...s, output: written.outPath}));
			const inFolder = isInside(state.folder, written.outPath);
			return status(
				withOutput,
				`wrote ${baseName(written.outPath)} (${formatBytes(written.sizes.outputBytes)}, ${written.sizes.compression.toFixed(1)}× smaller)${inFolder ? '; c compares it with its source' : ''}`,
				'info',
			);
		}

		case 'meta-save': {
			const slot = before as SaveSlot;
			return status(next, `saved ${baseName(slot.path)}: ${slot.what}${result.value.hashesRecomputed ? ' (sshs hashes recomputed)' : ''}${result.value.backupPath ? `; backup ${baseName(result.value.backupPath)}` : ''}`, 'info');
		}

		default: {
			return next;
		}
	}
}

function jobFailed(state: AppState, jobId: string, error: string, errorName: string | undefined): AppState {
	const {state: next, before} = updateSlot(state, slot => slot.jobId === jobId && isRunning(slot), slot => ({...slot, state: 'error', error, ...(errorName === undefined ? {} : {errorName})}));
	if (!before) {
		return state;
	}

	if (before.kind === 'resize-write' && errorName === 'TargetExistsError') {
		// Someone else made the file meanwhile (or it is outside the list): ask, never overwrite silently.
		return askOverwrite(next, (before as WriteSlot).target);
	}

	const what = {decompose: 'decomposition', 'base-norms': 'base norms', hash: 'hashing', 'resize-write': 'write', 'meta-save': 'save'}[before.kind];
	return status(next, `${what} failed: ${error}`, 'error');
}

/** The view that fills the body: the top one below the overlays (help, text inputs, confirmations). */
export function screenView(state: AppState): ViewId {
	return baseView(state);
}

export function isInside(folder: string, file: string): boolean {
	const relative = path.relative(folder, file);
	return relative !== '' && !relative.startsWith('..') && !path.isAbsolute(relative);
}

// ---- root -------------------------------------------------------------------------------------

export function toolsReducer(state: AppState, action: ToolAction): AppState {
	switch (action.type) {
		case 'tools-config': {
			const basePath = action.basePath === undefined ? state.tools.basePath : action.basePath;
			return state.tools.outDir === action.outDir && state.tools.basePath === basePath ? state : withTools(state, {outDir: action.outDir, basePath});
		}

		case 'resize-open': {
			return openResize(state, action.path);
		}

		case 'resize-close': {
			return hideView(state, 'resize');
		}

		case 'resize-escape': {
			return escapeResize(state);
		}

		case 'resize-choice': {
			const choices = enabledChoices(state.tools.basePath);
			const next = updateSession(state, session => {
				const index = choices.indexOf(session.choice);
				const choice = choices[(index + action.delta + choices.length) % choices.length] ?? 'rank';
				return {...session, choice};
			});
			return ensureBaseNorms(next);
		}

		case 'resize-step': {
			return updateSession(state, session => withParam(session, stepParam(paramKindOf(session), currentParam(session), action.direction, action.coarse, session.maxRank)));
		}

		case 'resize-param': {
			return updateSession(state, session => withParam(session, action.value));
		}

		case 'resize-selector': {
			return toggleSelector(state);
		}

		case 'resize-scroll': {
			const max = resizeMaxScroll(state);
			return updateSession(state, session => ({...session, scroll: Math.min(max, Math.max(0, session.scroll + action.delta))}));
		}

		case 'resize-retry': {
			const session = state.tools.resize;
			if (!session) {
				return state;
			}

			const slot = state.tools.decompositions[session.key];
			if (slot?.state === 'error' || slot?.state === 'cancelled' || !slot) {
				return queueDecomposition(state, session.key, session.path);
			}

			// The decomposition is there (or on its way): r retries failed or cancelled base norms.
			return ensureBaseNorms(state);
		}

		case 'resize-write': {
			return requestWrite(state, action.overwrite);
		}

		case 'hash-request': {
			const row = state.rows.get(action.path);
			if (row?.status !== 'ok') {
				return status(state, 'hashes: select a file that loaded', 'warn');
			}

			const key = statsKeyOf(row);
			const slot = state.tools.hashes[key];
			const next = state.detail.tab === 'overview' ? state : {...state, detail: {...state.detail, tab: 'overview' as const}};
			if (slot && (isActive(slot) || slot.state === 'done')) {
				return next; // Cached for this version of the file, or on its way.
			}

			const [withId, requestId] = nextRequest(next);
			const hash: HashSlot = {kind: 'hash', requestId, state: 'queued', path: action.path};
			return withTools(withId, {hashes: {...withId.tools.hashes, [key]: hash}});
		}

		case 'tool-job-started': {
			return updateSlot(state, slot => slot.requestId === action.requestId && slot.state === 'queued', slot => ({...slot, state: 'running', jobId: action.jobId})).state;
		}

		case 'tool-job-refused': {
			const {state: next, before} = updateSlot(state, slot => slot.requestId === action.requestId && slot.state === 'queued', slot => ({...slot, state: 'error', error: action.error}));
			return before ? status(next, action.error, 'error') : state;
		}

		case 'tool-job-progress': {
			return updateSlot(state, slot => slot.jobId === action.jobId && (slot.state === 'running' || slot.state === 'cancelling'), slot => ({...slot, progress: action.progress})).state;
		}

		case 'tool-job-done': {
			return jobDone(state, action.jobId, action.result);
		}

		case 'tool-job-failed': {
			return jobFailed(state, action.jobId, action.error, action.errorName);
		}

		case 'tool-job-cancelled': {
			const {state: next, before} = updateSlot(state, slot => slot.jobId === action.jobId && isRunning(slot), slot => ({...slot, state: 'cancelled'}));
			const what = before?.kind === 'base-norms' ? 'base norms' : before?.kind;
			return before ? status(next, before.kind === 'resize-write' ? 'write cancelled: no file written' : `${what} cancelled`, 'info') : state;
		}

		case 'edit-open': {
			return openEdit(state, action.mode, action.path, action.key);
		}

		case 'edit-param-open': {
			const session = state.tools.resize;
			if (!session) {
				return state;
			}

			const kind = paramKindOf(session);
			const text = String(currentParam(session));
			const edit: EditState = {mode: 'resize-param', path: session.path, key: kind === 'size' ? `${session.choice} size (MiB)` : session.choice, text, cursor: codePoints(text).length, original: text, stamp: {sizeBytes: 0, mtimeMs: 0}};
			return showView(withTools(state, {edit}), 'edit-value');
		}

		case 'edit-insert': {
			return updateEdit(state, edit => {
				const chars = codePoints(edit.text);
				const inserted = codePoints(action.text);
				chars.splice(edit.cursor, 0, ...inserted);
				return {...edit, text: chars.join(''), cursor: edit.cursor + inserted.length};
			});
		}

		case 'edit-backspace': {
			return updateEdit(state, edit => {
				if (edit.cursor === 0) {
					return edit;
				}

				const chars = codePoints(edit.text);
				chars.splice(edit.cursor - 1, 1);
				return {...edit, text: chars.join(''), cursor: edit.cursor - 1};
			});
		}

		case 'edit-cursor': {
			return updateEdit(state, edit => {
				const length = codePoints(edit.text).length;
				const row = Math.max(4, state.viewport.bodyWidth - 2);
				const step = {left: -1, right: 1, up: -row, down: row, home: -length, end: length}[action.to];
				const cursor = Math.min(length, Math.max(0, edit.cursor + step));
				return cursor === edit.cursor ? edit : {...edit, cursor};
			});
		}

		case 'edit-clear': {
			return updateEdit(state, edit => ({...edit, text: '', cursor: 0}));
		}

		case 'edit-commit': {
			return commitEdit(state);
		}

		case 'edit-cancel': {
			return closeEdit(state);
		}

		case 'meta-delete-ask': {
			return askDelete(state, action.path, action.key);
		}

		case 'meta-save-request': {
			return requestSave(state, action);
		}

		case 'confirm-answer': {
			const {confirm} = state.tools;
			const closed = hideView(withTools(state, {confirm: null}), 'confirm');
			if (!confirm) {
				return closed;
			}

			return action.yes ? toolsReducer(closed, confirm.yes) : status(closed, confirm.declined, 'info');
		}
	}
}

/** Slots waiting for the hook to start them. */
export function queuedSlots(tools: ToolsState): AnySlot[] {
	return allSlots(tools).filter(slot => slot.state === 'queued');
}

/** Slots whose cancel the hook must pass to the engine. */
export function cancellingSlots(tools: ToolsState): AnySlot[] {
	return allSlots(tools).filter(slot => slot.state === 'cancelling' && slot.jobId !== undefined);
}
