// Shared data shapes of the pure LoRA layer. Everything here is plain data so it can cross
// the engine's process boundary as JSON and be rendered by the dashboard without recomputation.

export type DType =
	| 'F64'
	| 'F32'
	| 'F16'
	| 'BF16'
	| 'F8_E4M3'
	| 'F8_E5M2'
	| 'I64'
	| 'I32'
	| 'I16'
	| 'I8'
	| 'U8'
	| 'BOOL';

/** One tensor entry of a safetensors header. Offsets are relative to the start of the data area. */
export type TensorInfo = {
	name: string;
	dtype: DType;
	shape: readonly number[];
	begin: number;
	end: number;
};

export type SafetensorsHeader = {
	path: string;
	sizeBytes: number;
	mtimeMs: number;
	/** Length N of the JSON header (the u64 at byte 0). */
	headerLength: number;
	/** Absolute file offset of the data area: 8 + N. */
	dataOffset: number;
	/** Tensors in file order (sorted by begin offset). */
	tensors: readonly TensorInfo[];
	byName: ReadonlyMap<string, TensorInfo>;
	/** Raw, untrusted `__metadata__` map. Never print without sanitising. */
	metadata: Record<string, string>;
};

/** What a file on disk turned out to be, before any parsing. */
export type FileKind =
	| 'safetensors'
	| 'lfs-pointer'
	| 'pickle-zip'
	| 'pickle'
	| 'empty'
	| 'unknown';

export type KeyStyle =
	| 'kohya'
	| 'lycoris'
	| 'diffusers-attnproc'
	| 'diffusers'
	| 'peft'
	| 'cloneofsimo'
	| 'mixed'
	| 'unknown';

export type NetworkType =
	| 'LoRA'
	| 'LoCon'
	| 'LoHa'
	| 'LoKr'
	| 'DoRA'
	| 'IA3'
	| 'GLoRA'
	| 'OFT'
	| 'BOFT'
	| 'Full'
	| 'Norm'
	| 'mixed'
	| 'unknown';

/** How one module's ΔW is reconstructed. */
export type ModuleAlgo =
	| 'lora'
	| 'locon-tucker'
	| 'loha'
	| 'lokr'
	| 'ia3'
	| 'glora'
	| 'oft'
	| 'boft'
	| 'full'
	| 'norm';

export type Arch = 'sd1' | 'sd2' | 'sdxl' | 'sd3' | 'flux' | 'unknown';

export type Component = 'unet' | 'te' | 'te1' | 'te2' | 'te3';

export type LayerKind = 'linear' | 'conv1x1' | 'convkxk';

export type AlphaSource =
	| 'tensor'
	| 'metadata'
	| 'conv-metadata'
	| 'peft'
	| 'default'
	| 'none';

export type LoraModule = {
	/** Module name as the file spells it, without the tensor suffix (e.g. `lora_unet_..._to_q`, `unet:3`). */
	name: string;
	component: Component;
	algo: ModuleAlgo;
	kind: LayerKind;
	/** Rank (true rank for kohya Flux split_qkv); null where the algorithm has none (full, ia3, oft). */
	rank: number | null;
	alpha: number | null;
	alphaSource: AlphaSource;
	/** Multiplier of the raw product: alpha/rank (or alpha/sqrt(rank) for rsLoRA); 1 when unknown. */
	scale: number;
	/** Output features of the target layer. */
	outDim: number;
	/** Input features flattened the way kohya does: in·kh·kw for conv. */
	inDim: number;
	/** Kernel size for conv layers, null for linear. */
	kernel: [number, number] | null;
	/** Display block id: IN01..IN11, M00, OUT00..OUT11 (SD1/2), IN00..IN08/M00/OUT00..OUT08 (SDXL), D00..D18/S00..S37/IN/OUT (Flux), J00.. (SD3), TE/TE1/TE2/TE3/T5/CLIP, or '?'. */
	block: string;
	/** Sort key that puts blocks in architecture order (input, middle, output; TE after). */
	blockOrder: number;
	/** Role → tensor key, e.g. {down, up, alpha, mid, dora_scale, hada_w1_a, lokr_w1, ...}. */
	tensors: Record<string, string>;
	/** 3 or 4 when a kohya Flux split_qkv module stacks that many down matrices. */
	splitQkv?: number;
	hasDora: boolean;
	/** True when ΔW cannot be reconstructed without the base weights (IA3, OFT, GLoRA, DoRA result). */
	needsBase: boolean;
};

export type LoraModel = {
	keyStyle: KeyStyle;
	networkType: NetworkType;
	arch: Arch;
	/** Why the arch was chosen, in a few words ("attn2 to_k in=768"). */
	archEvidence: string;
	/** Arch claimed by metadata (ss_base_model_version / modelspec.architecture), if any. */
	metadataArch: Arch | null;
	modules: LoraModule[];
	/** Most common rank among factor modules, null if none. */
	rank: number | null;
	/** Most common alpha, null if none. */
	alpha: number | null;
	/** Dominant tensor dtype. */
	dtype: string;
	/** Tensors not claimed by any module (TI embeddings, norm scales, stray keys). */
	unknownTensors: string[];
	/** Non-fatal problems: malformed key schemes, up without down, shape mismatches, arch disagreement. */
	warnings: string[];
};

export type WeightBucket = {
	/** Mean over the bucket's `.weight` tensors of sqrt(sum w^2) (lora-inspector "average magnitude"). */
	magnitude: number;
	/** Mean over the bucket's tensors of mean |w| (lora-inspector "average strength"). */
	strength: number;
	tensors: number;
};

export type InspectorBuckets = {
	unet: WeightBucket | null;
	unetConv: WeightBucket | null;
	te: WeightBucket | null;
	te2: WeightBucket | null;
};

export type ModuleNorm = {
	name: string;
	block: string;
	blockOrder: number;
	component: Component;
	rank: number | null;
	alpha: number | null;
	/** ||scale·ΔW||_F of the effective update; null when it needs base weights. */
	norm: number | null;
	/** Count of NaN/Inf values in the module's tensors. */
	nonFinite: number;
};

export type BlockNorm = {
	name: string;
	blockOrder: number;
	modules: number;
	/** sqrt(sum of squared module norms). */
	norm: number;
	/** Mean of module norms (lora-inspector-rs' per-block figure). */
	mean: number;
};

export type LoraStats = {
	buckets: InspectorBuckets;
	modules: ModuleNorm[];
	blocks: BlockNorm[];
	/** sqrt(sum ||ΔW||^2) over UNet / transformer modules. */
	unetNorm: number;
	/** sqrt(sum ||ΔW||^2) over text-encoder modules. */
	teNorm: number;
	nonFiniteValues: number;
	/** Modules whose effective update is exactly zero. */
	zeroModules: string[];
	/** Bytes of tensor data read. */
	bytesRead: number;
};

export type ProgressInfo = {
	done: number;
	total: number;
	label?: string;
};

export type ProgressCallback = (progress: ProgressInfo) => void;

/**
 * Matrix kernels the statistics and decomposition code needs. Injected so source/lora stays pure:
 * the engine passes onnxruntime-backed kernels, tests and small jobs pass plain-JS ones.
 * Matrices are dense row-major float32; results are float64 row-major.
 */
export type GramKernels = {
	/** MᵀM (cols×cols) of a rows×cols matrix. */
	gramCols: (m: Float32Array, rows: number, cols: number) => Promise<Float64Array>;
	/** MMᵀ (rows×rows) of a rows×cols matrix. */
	gramRows: (m: Float32Array, rows: number, cols: number) => Promise<Float64Array>;
};

/** Singular spectrum of one module's effective update scale·ΔW, as the resize planner needs it. */
export type ModuleSpectrum = {
	name: string;
	block: string;
	blockOrder: number;
	component: Component;
	algo: ModuleAlgo;
	kind: LayerKind;
	outDim: number;
	inDim: number;
	kernel: [number, number] | null;
	rank: number | null;
	alpha: number | null;
	scale: number;
	/** Dtype of the module's factor tensors (output keeps it unless asked otherwise). */
	dtype: DType;
	/** All non-zero singular values of scale·ΔW, descending (empty for modules that are not resizable). */
	singularValues: number[];
	/** False for LoHa/LoKr/IA3/OFT/... modules, which are copied unchanged. */
	resizable: boolean;
	/** Why a module is not resizable, or a caveat (DoRA: result approximate). */
	note?: string;
};

export type DecompositionSummary = {
	path: string;
	sizeBytes: number;
	mtimeMs: number;
	device: string;
	modules: ModuleSpectrum[];
	seconds: number;
};
