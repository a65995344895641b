// The Resize view's numbers: each method's parameter and how ←/→ move it, and the plan for the
// current choice, computed synchronously with H5's planResize on the cached decomposition (the
// expensive part, preparePlanInput, runs once per decomposition). The plan is built with the same
// inputs the 'resize-write' job uses (file size, copied bytes, metadata size, loader scales, DoRA
// modules), so what the preview shows is what `w` writes. The checkpoint recipes (spn_ckpt, fro_ckpt,
// subspace) plan with the base norms of the 'base-norms' job; elias recipes select by thr or by a size target.
import {
	normalizeRecipeWeights,
	outputPath,
	planResize,
	preparePlanInput,
	type BaseNorms,
	type PlanInput,
	type PlanOptions,
	type ResizeMethod,
	type ResizePlan,
} from '../lora/resize-plan.js';
import type {DecompositionSummary, LoraModel, ModuleSpectrum, SafetensorsHeader} from '../lora/types.js';
import {copiedBytesOf} from '../lora/resize-output.js';
import {
	recipeChoices,
	resizeChoices,
	type BaseNormsSlot,
	type ParamKind,
	type RecipeChoice,
	type RecipeSelector,
	type ResizeChoice,
	type ResizeSession,
	type ToolsState,
} from './tools-types.js';
import type {AppState} from './types.js';

/** The checkpoint recipes: scored against the base weights (job 'base-norms'). */
export function needsBase(choice: ResizeChoice): choice is 'spn_ckpt' | 'fro_ckpt' | 'subspace' {
	return choice === 'spn_ckpt' || choice === 'fro_ckpt' || choice === 'subspace';
}

/** Why a method cannot be chosen here, or undefined: the checkpoint recipes need `--base`. */
export function choiceDisabledReason(choice: ResizeChoice, basePath: string | null | undefined): string | undefined {
	return needsBase(choice) && !basePath ? `${choice}: start lorascope with --base <checkpoint>` : undefined;
}

/** The methods `m` cycles through. */
export function enabledChoices(basePath: string | null | undefined): readonly ResizeChoice[] {
	return resizeChoices.filter(choice => choiceDisabledReason(choice, basePath) === undefined);
}

export function isRecipeChoice(choice: ResizeChoice): choice is RecipeChoice {
	return (recipeChoices as readonly string[]).includes(choice);
}

/**
 * Starting parameters: half the rank; kohya's usual sv_ratio 4 and 0.9 fractions; elias' thr −1.2,
 * and for fro_ckpt elias' default recipe (fro_ckpt=1,thr=−3.5): ‖W‖_F is √min(o,i) times σ_max
 * or more, so −1.2 there would drop every module. subspace scores against |uᵢᵀ·W·vᵢ| ≤ σ_max, so
 * −1.2 keeps at least what spn_ckpt's −1.2 keeps.
 */
export function defaultParams(maxRank: number): Record<ResizeChoice, number> {
	return {
		rank: Math.max(1, Math.floor(maxRank / 2)),
		sv_ratio: 4,
		sv_fro: 0.9,
		sv_cumulative: 0.9,
		spn_lora: -1.2,
		fro_lora: -1.2,
		spn_ckpt: -1.2,
		fro_ckpt: -3.5,
		subspace: -1.2,
	};
}

export function defaultSelectors(): Record<RecipeChoice, RecipeSelector> {
	return {spn_lora: 'thr', fro_lora: 'thr', spn_ckpt: 'thr', fro_ckpt: 'thr', subspace: 'thr'};
}

export function defaultSizes(): Record<RecipeChoice, number | null> {
	return {spn_lora: null, fro_lora: null, spn_ckpt: null, fro_ckpt: null, subspace: null};
}

/** What ←/→ and = change in this session: the method's parameter, or the recipe's size target. */
export function paramKindOf(session: Pick<ResizeSession, 'choice' | 'selectors'>): ParamKind {
	return isRecipeChoice(session.choice) && session.selectors[session.choice] === 'size' ? 'size' : session.choice;
}

/** The value ←/→ and = change. */
export function currentParam(session: ResizeSession): number {
	if (paramKindOf(session) === 'size' && isRecipeChoice(session.choice)) {
		return session.sizes[session.choice] ?? 1;
	}

	return session.params[session.choice];
}

/** The session with the value ←/→ and = change set to `value`. */
export function withParam(session: ResizeSession, value: number): ResizeSession {
	if (paramKindOf(session) === 'size' && isRecipeChoice(session.choice)) {
		return session.sizes[session.choice] === value ? session : {...session, sizes: {...session.sizes, [session.choice]: value}};
	}

	return session.params[session.choice] === value ? session : {...session, params: {...session.params, [session.choice]: value}};
}

type Range = {min: number; max: number};

function rangeOf(kind: ParamKind, maxRank: number): Range {
	switch (kind) {
		case 'rank': {
			return {min: 1, max: Math.max(1, maxRank)};
		}

		case 'sv_ratio': {
			return {min: 1, max: 10_000};
		}

		case 'sv_fro':
		case 'sv_cumulative': {
			return {min: 0.01, max: 1};
		}

		case 'size': {
			// MiB of factor tensors: 10 KiB up to far beyond any LoRA (everything then fits).
			return {min: 0.01, max: 100_000};
		}

		default: {
			return {min: -10, max: 2};
		}
	}
}

/** Rounds away float noise (0.1 + 0.2) so values print and name files cleanly. */
function tidy(value: number): number {
	return Math.round(value * 10_000) / 10_000;
}

/** Three significant digits (sizes span 0.01 to thousands of MiB). */
function significant3(value: number, round: (x: number) => number = Math.round): number {
	if (!(value > 0) || !Number.isFinite(value)) {
		return value;
	}

	const unit = 10 ** (Math.floor(Math.log10(value)) - 2);
	return Number((round(value / unit) * unit).toPrecision(3));
}

function clampTo(value: number, range: Range): number {
	return Math.min(range.max, Math.max(range.min, value));
}

/**
 * Fine steps: ±1 rank, ±1 ratio, ±0.01 fraction, ±0.05 threshold, ±5% size. Coarse: powers of two,
 * ×2, ±0.05, ±0.25, ×2.
 */
export function stepParam(kind: ParamKind, value: number, direction: 1 | -1, coarse: boolean, maxRank: number): number {
	const range = rangeOf(kind, maxRank);
	let next: number;
	switch (kind) {
		case 'rank': {
			if (coarse) {
				// The next power of two in that direction (4 → 8 → 16; 12 → 16 or 8).
				const power = direction > 0 ? 2 ** (Math.floor(Math.log2(value)) + 1) : 2 ** (Math.ceil(Math.log2(value)) - 1);
				next = power;
			} else {
				next = value + direction;
			}

			return clampTo(Math.round(next), range);
		}

		case 'sv_ratio': {
			next = coarse ? (direction > 0 ? value * 2 : value / 2) : value + direction;
			break;
		}

		case 'sv_fro':
		case 'sv_cumulative': {
			next = value + (direction * (coarse ? 0.05 : 0.01));
			break;
		}

		case 'size': {
			// Relative steps: a size target means the same at 2 MiB and at 200 MiB.
			const factor = coarse ? 2 : 1.05;
			next = significant3(direction > 0 ? value * factor : value / factor);
			if (next === value) {
				next = significant3(value + (direction * 10 ** (Math.floor(Math.log10(value)) - 2)));
			}

			return clampTo(next, range);
		}

		default: {
			next = value + (direction * (coarse ? 0.25 : 0.05));
			break;
		}
	}

	return tidy(clampTo(next, range));
}

/** The step sizes in words, for the view's parameter line (shift+←/→ also take the coarse step). */
export function stepHint(kind: ParamKind): string {
	switch (kind) {
		case 'rank': {
			return '←/→ ±1  [ ] powers of 2';
		}

		case 'sv_ratio': {
			return '←/→ ±1  [ ] ×2';
		}

		case 'sv_fro':
		case 'sv_cumulative': {
			return '←/→ ±0.01  [ ] ±0.05';
		}

		case 'size': {
			return '←/→ ±5%  [ ] ×2';
		}

		default: {
			return '←/→ ±0.05  [ ] ±0.25';
		}
	}
}

/** What the parameter is, in words. */
export function paramName(kind: ParamKind): string {
	switch (kind) {
		case 'rank': {
			return 'the rank every module keeps (at most its own)';
		}

		case 'sv_ratio': {
			return 'keep σ ≥ σmax / ratio';
		}

		case 'sv_fro': {
			return 'keep this fraction of ‖ΔW‖F';
		}

		case 'sv_cumulative': {
			return 'keep this fraction of Σσ';
		}

		case 'size': {
			return 'factor tensors in MiB, highest scores first';
		}

		default: {
			return 'score threshold (log10)';
		}
	}
}

/** A typed parameter: a number in the method's range, or a one-line reason. */
export function parseParam(kind: ParamKind, text: string, maxRank: number): {value: number} | {error: string} {
	const trimmed = text.trim();
	const value = trimmed === '' ? Number.NaN : Number(trimmed);
	if (!Number.isFinite(value)) {
		return {error: `${kind}: "${trimmed.slice(0, 40)}" is not a number`};
	}

	const range = rangeOf(kind, maxRank);
	if (kind === 'rank' && !Number.isInteger(value)) {
		return {error: 'rank: a whole number'};
	}

	if (value < range.min || value > range.max) {
		return {error: `${kind}: between ${range.min} and ${range.max}${kind === 'size' ? ' MiB' : ''}`};
	}

	return {value};
}

/** The method of a choice: its parameter, or for a recipe selecting by size, the size target in MiB. */
export function methodOf(choice: ResizeChoice, value: number, selector: RecipeSelector = 'thr'): ResizeMethod {
	switch (choice) {
		case 'rank': {
			return {method: 'rank', rank: value};
		}

		case 'sv_ratio':
		case 'sv_fro':
		case 'sv_cumulative': {
			return {method: choice, param: value};
		}

		default: {
			const weights = normalizeRecipeWeights({[choice]: 1});
			return selector === 'size'
				? {method: 'recipe', weights, size: value, text: `${choice}=1,size=${value}`}
				: {method: 'recipe', weights, thr: value, text: `${choice}=1,thr=${value}`};
		}
	}
}

export function sessionMethod(session: ResizeSession): ResizeMethod {
	return methodOf(session.choice, currentParam(session), paramKindOf(session) === 'size' ? 'size' : 'thr');
}

/**
 * MiB of the factor tensors a plan keeps (3 significant digits, rounded up): where a recipe's size
 * target starts when the user switches from thr to size, so the plan on screen barely moves.
 */
export function keptFactorMiB(plan: ResizePlan): number {
	let bytes = 0;
	for (const module of plan.modules) {
		if (module.action !== 'copy') {
			bytes += module.bytesAfter;
		}
	}

	return clampTo(significant3(bytes / (1024 * 1024), Math.ceil), rangeOf('size', 1));
}

export function sessionTarget(session: ResizeSession, tools: Pick<ToolsState, 'outDir'>): string {
	return outputPath(session.path, sessionMethod(session), tools.outDir ?? undefined);
}

// ---- the plan ---------------------------------------------------------------------------------

/**
 * The scale loaders apply (mirrors resize-write's loaderScales + withModelScales): a kohya module whose
 * alpha comes from metadata, not from an alpha tensor, is applied at scale 1 by kohya, A1111 and
 * ComfyUI, and the written file preserves that update; its singular values are rescaled to match.
 */
function loaderSpectra(spectra: readonly ModuleSpectrum[], model: LoraModel | undefined): readonly ModuleSpectrum[] {
	if (!model) {
		return spectra;
	}

	const byName = new Map(model.modules.map(m => [m.name, m]));
	return spectra.map(spectrum => {
		const module = byName.get(spectrum.name);
		if (!module || !spectrum.resizable || spectrum.scale === 0 || module.rank === null) {
			return spectrum;
		}

		const fromMetadata = module.alphaSource === 'metadata' || module.alphaSource === 'conv-metadata';
		const scale = fromMetadata ? 1 : module.scale;
		if (Math.abs(scale - spectrum.scale) <= 1e-12 * Math.abs(scale)) {
			return spectrum;
		}

		const factor = Math.abs(scale / spectrum.scale);
		return {...spectrum, scale, alpha: fromMetadata ? module.rank : module.alpha, singularValues: spectrum.singularValues.map(v => v * factor)};
	});
}

export type PreparedPreview = {input: PlanInput; options: PlanOptions};

/** preparePlanInput with the write job's extras, for a decomposition and the file's header and model. */
export function preparePreview(summary: DecompositionSummary, header: SafetensorsHeader | undefined, model: LoraModel | undefined): PreparedPreview {
	const spectra = loaderSpectra(summary.modules, model);
	const input = preparePlanInput(spectra, {
		fileBytes: summary.sizeBytes,
		copiedBytes: header && model ? copiedBytesOf(header, model, spectra) : undefined,
		metadataBytes: header ? JSON.stringify(header.metadata).length + 600 : undefined,
	});
	const dora = model?.modules.filter(m => m.hasDora).map(m => m.name) ?? [];
	return {input, options: {keepAtLeastOne: dora}};
}

export type Preview =
	| {state: 'ready'; method: ResizeMethod; plan: ResizePlan; target: string; summary: DecompositionSummary; planMs: number}
	| {state: 'invalid'; method: ResizeMethod; error: string}
	/** The decomposition, or (checkpoint recipes) the base norms, are not there yet. */
	| {state: 'waiting'; for: 'decomposition' | 'base'};

let preparedMemo: {summary: DecompositionSummary; header: SafetensorsHeader | undefined; prepared: PreparedPreview} | undefined;
let planMemo: {prepared: PreparedPreview; methodKey: string; target: string; base: BaseNorms | undefined; preview: Preview} | undefined;

function reasonOf(error: unknown): string {
	if (error && typeof error === 'object' && 'reason' in error && typeof (error as {reason: unknown}).reason === 'string') {
		return (error as {reason: string}).reason;
	}

	return error instanceof Error ? (error.message.split('\n')[0] ?? error.name) : String(error);
}

/** The base-norms slot of the open session's file version, when the view has asked for one. */
export function sessionBaseSlot(state: AppState): BaseNormsSlot | undefined {
	const session = state.tools.resize;
	return session ? state.tools.baseNorms[session.key] : undefined;
}

/**
 * Which norms a checkpoint recipe needs: fro_ckpt only ‖W‖_F, spn_ckpt σ_max as well; subspace
 * needs no σ_max, only its projections (baseSubspaceOf).
 */
export function baseNeedOf(choice: ResizeChoice): BaseNormsSlot['need'] {
	return choice === 'spn_ckpt' ? 'both' : 'frobenius';
}

/** Whether a checkpoint recipe needs |uᵢᵀ·W·vᵢ| per singular value. */
export function baseSubspaceOf(choice: ResizeChoice): boolean {
	return choice === 'subspace';
}

/** Whether a slot's norms (done or on their way) serve the choice. */
export function baseSlotServes(slot: BaseNormsSlot, choice: ResizeChoice, basePath: string | null): boolean {
	return slot.basePath === basePath
		&& (slot.need === 'both' || baseNeedOf(choice) === 'frobenius')
		&& (slot.subspace === true || !baseSubspaceOf(choice));
}

/** The plan for the open Resize view, memoised on the decomposition, the method and the base norms. */
export function resizePreview(state: AppState): Preview {
	const session = state.tools.resize;
	const summary = session ? state.tools.decompositions[session.key]?.result : undefined;
	if (!session || !summary) {
		return {state: 'waiting', for: 'decomposition'};
	}

	const method = sessionMethod(session);
	let base: BaseNorms | undefined;
	if (needsBase(session.choice)) {
		const disabled = choiceDisabledReason(session.choice, state.tools.basePath);
		if (disabled !== undefined) {
			return {state: 'invalid', method, error: disabled};
		}

		const slot = sessionBaseSlot(state);
		if (slot?.state !== 'done' || !slot.result || !baseSlotServes(slot, session.choice, state.tools.basePath)) {
			return {state: 'waiting', for: 'base'};
		}

		base = slot.result.norms;
	}

	const entry = state.rows.get(session.path)?.entry;
	// The entry read from the same version of the file as the decomposition.
	const same = entry?.header && entry.header.sizeBytes === summary.sizeBytes && entry.header.mtimeMs === summary.mtimeMs ? entry : undefined;
	if (preparedMemo?.summary !== summary || preparedMemo.header !== same?.header) {
		preparedMemo = {summary, header: same?.header, prepared: preparePreview(summary, same?.header, same?.model)};
	}

	const {prepared} = preparedMemo;
	const methodKey = JSON.stringify(method);
	const target = sessionTarget(session, state.tools);
	if (planMemo?.prepared === prepared && planMemo.methodKey === methodKey && planMemo.target === target && planMemo.base === base) {
		return planMemo.preview;
	}

	let preview: Preview;
	try {
		const started = performance.now();
		const plan = planResize(prepared.input, method, base ? {...prepared.options, base} : prepared.options);
		preview = {state: 'ready', method, plan, target, summary, planMs: performance.now() - started};
	} catch (error) {
		preview = {state: 'invalid', method, error: reasonOf(error)};
	}

	planMemo = {prepared, methodKey, target, base, preview};
	return preview;
}
