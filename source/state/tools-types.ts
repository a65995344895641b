// State of the dashboard's tools (issues 4 and 5): the Resize view, metadata editing, file hashes
// and the engine jobs behind them. Plain data only; the reducer in reducer-tools.ts is pure. Jobs are
// requested in state (a slot in 'queued' state with a request id) and started by the use-tool-jobs
// hook, which reports back with the engine's job id; a result whose job id no longer matches its slot
// is dropped (the user moved on, or asked again).
import type {BaseNormsResult} from '../engine/jobs/base-norms.js';
import type {MetaSaveResult} from '../engine/jobs/meta-save.js';
import type {ResizeWriteResult} from '../engine/jobs/resize-write.js';
import type {ReadStamp} from '../lora/edit.js';
import type {FileHashes} from '../lora/hashes.js';
import type {BaseNorm, ResizeMethod} from '../lora/resize-plan.js';
import type {DecompositionSummary} from '../lora/types.js';

export type JobProgress = {
	done: number;
	total: number;
	label?: string;
	bytesPerSecond?: number;
	etaSeconds?: number;
};

export type SlotState = 'queued' | 'running' | 'cancelling' | 'done' | 'error' | 'cancelled';

export type ToolJobKind = 'decompose' | 'base-norms' | 'resize-write' | 'hash' | 'meta-save';

/** One engine job the screen waits for. */
export type JobSlot<R> = {
	kind: ToolJobKind;
	/** Set when the slot is (re)queued; the hook answers with the engine's job id. */
	requestId: number;
	state: SlotState;
	jobId?: string;
	progress?: JobProgress;
	result?: R;
	/** One line. */
	error?: string;
	/** Name of the error class (TargetExistsError asks before overwriting). */
	errorName?: string;
};

export type DecompositionSlot = JobSlot<DecompositionSummary> & {path: string};

export type HashSlot = JobSlot<FileHashes> & {path: string};

/** σ_max and ‖W‖_F of the base weights behind one LoRA file version (job 'base-norms'). */
export type BaseNormsSlot = JobSlot<BaseNormsResult> & {
	/** The LoRA file. */
	path: string;
	/** The checkpoint (`--base`). */
	basePath: string;
	/** fro_ckpt needs only ‖W‖_F (read speed); spn_ckpt needs σ_max too. */
	need: 'frobenius' | 'both';
	/** Also |uᵢᵀ·W·vᵢ| per singular value, for the subspace recipe (depends on the LoRA's vectors). */
	subspace?: boolean;
};

/**
 * The methods the Resize view cycles through: kohya's four, elias-gaeros' LoRA-only recipes, and the
 * checkpoint recipes, which need the base checkpoint given with `--base`. fro_ckpt comes before
 * spn_ckpt because m cycles through them: fro_ckpt needs only ‖W‖_F (a stream at read speed), while
 * spn_ckpt starts σ_max runs (tens of seconds on an SDXL base) that passing through should not cost.
 * subspace sits between them: it reads the base weights once and projects them on the LoRA's
 * singular vectors (uᵢᵀ·W·vᵢ, one product per module), far cheaper than σ_max's power iterations.
 */
export const resizeChoices = ['rank', 'sv_ratio', 'sv_fro', 'sv_cumulative', 'spn_lora', 'fro_lora', 'fro_ckpt', 'subspace', 'spn_ckpt'] as const;
export type ResizeChoice = (typeof resizeChoices)[number];

export const recipeChoices = ['spn_lora', 'fro_lora', 'spn_ckpt', 'fro_ckpt', 'subspace'] as const;
export type RecipeChoice = (typeof recipeChoices)[number];

/** How an elias recipe selects: a log10 score threshold, or a size target in MiB (greedy by score). */
export type RecipeSelector = 'thr' | 'size';

/** What ←/→ and = change: the method's own parameter, or a recipe's size target. */
export type ParamKind = ResizeChoice | 'size';

export type WriteSlot = JobSlot<ResizeWriteResult> & {
	/** The output path the write aims at (outputPath of the method). */
	target: string;
	method: ResizeMethod;
	overwrite: boolean;
	/** Base norms of a checkpoint recipe, and the checkpoint they came from. */
	baseNorms?: Record<string, BaseNorm>;
	basePath?: string;
};

export type ResizeSession = {
	/** The source file (raw path). */
	path: string;
	/** Its cache key (path + size + mtime) when the view opened. */
	key: string;
	choice: ResizeChoice;
	/** The parameter of each method (a recipe's thr), so cycling back keeps what the user set. */
	params: Record<ResizeChoice, number>;
	/** Per recipe: select by thr or by size. */
	selectors: Record<RecipeChoice, RecipeSelector>;
	/** Per recipe: the size target in MiB; null until size is first chosen (then it starts at the thr plan's size). */
	sizes: Record<RecipeChoice, number | null>;
	/** Largest rank of the file's modules: the upper end of the `rank` method. */
	maxRank: number;
	scroll: number;
	write: WriteSlot | null;
	/** The file the last successful write produced. */
	output: string | null;
};

/** What a text input edits: a metadata value (existing key or a new one), a new key's name, the resize parameter. */
export type EditMode = 'value' | 'new-key' | 'new-value' | 'resize-param';

export type EditState = {
	mode: EditMode;
	path: string;
	/** The metadata key (empty while typing a new key's name). */
	key: string;
	text: string;
	/** Cursor position in code points of `text`. */
	cursor: number;
	/** The value before editing (metadata) or the parameter as text. */
	original: string;
	/** Size and mtime of the file when its metadata was read. */
	stamp: ReadStamp;
};

export type SaveSlot = JobSlot<MetaSaveResult> & {
	path: string;
	/** What the save does, for the status line ("set ss_output_name"). */
	what: string;
	metadata: Record<string, string>;
	stamp: ReadStamp;
	knownDataSha256?: string;
};

export type ConfirmState = {
	/** The question; our own text around names that are cleaned when drawn. */
	prompt: string;
	/** Dispatched on y. */
	yes: ToolRequest;
	/** Status shown when the answer is anything else. */
	declined: string;
};

/** What a confirmation can start. */
export type ToolRequest =
	| {type: 'resize-write'; overwrite: boolean}
	| {type: 'meta-save-request'; path: string; metadata: Record<string, string>; stamp: ReadStamp; what: string};

export type ToolsState = {
	nextRequest: number;
	decompositions: Readonly<Record<string, DecompositionSlot>>;
	hashes: Readonly<Record<string, HashSlot>>;
	/** By the LoRA's cache key (path + size + mtime). */
	baseNorms: Readonly<Record<string, BaseNormsSlot>>;
	resize: ResizeSession | null;
	edit: EditState | null;
	confirm: ConfirmState | null;
	save: SaveSlot | null;
	/** `--out`: where resized files go (default: next to the source). */
	outDir: string | null;
	/** `--base`: the checkpoint the spn_ckpt / fro_ckpt recipes score against (null: not given). */
	basePath: string | null;
};

export function initialTools(): ToolsState {
	return {nextRequest: 1, decompositions: {}, hashes: {}, baseNorms: {}, resize: null, edit: null, confirm: null, save: null, outDir: null, basePath: null};
}
