// Shapes of the dashboard state. Plain data only: the reducer is pure and unit-tested.
import type {LoraStats} from '../lora/types.js';
import type {ParsedFilter} from './filter.js';
import type {LoadedEntry} from './entry-shape.js';
import type {ToolsState} from './tools-types.js';

/**
 * Views that can sit on the view stack. The `Record<ViewId, …>` tables in keymap.ts make the type
 * checker reject a view without a title and a keymap. Issues 4 and 5 add 'resize', 'edit-value'
 * and 'confirm' here.
 */
export type ViewId = 'files' | 'detail' | 'compare' | 'help' | 'input' | 'log' | 'resize' | 'edit-value' | 'confirm';

export const tabIds = ['overview', 'metadata', 'tags', 'dataset', 'blocks'] as const;
export type TabId = (typeof tabIds)[number];

export const tabTitles: Readonly<Record<TabId, string>> = {
	overview: 'Overview',
	metadata: 'Metadata',
	tags: 'Tags',
	dataset: 'Dataset',
	blocks: 'Blocks',
};

export const sortKeys = ['modified', 'name', 'size', 'rank', 'epoch'] as const;
export type SortKey = (typeof sortKeys)[number];

export type TerminalEnv = {
	/** UTF-8 locale: box drawing and block glyphs; otherwise ASCII. */
	unicode: boolean;
	/** False under NO_COLOR or without a TTY. */
	color: boolean;
};

/** Display fields of one file, sanitised once when the entry loads. */
export type RowSummary = {
	arch?: string;
	networkType?: string;
	rank?: number;
	alpha?: number;
	/** "Dynamic" and other non-numeric dims are shown as text. */
	rankText?: string;
	alphaText?: string;
	epoch?: number;
	outputName?: string;
	title?: string;
	optimizer?: string;
	lr?: number;
	steps?: number;
	dtype?: string;
	base?: string;
	resolution?: string;
	scheduler?: string;
	moduleCount?: number;
};

export type RowStatus = 'pending' | 'ok' | 'error';

export type FileRow = {
	path: string;
	/** Sanitised display strings. */
	name: string;
	folder: string;
	sizeBytes: number;
	mtimeMs: number;
	status: RowStatus;
	/** One-line, sanitised reason when status is 'error'. */
	error?: string;
	/** Appeared or changed on disk while the app ran (watch); shown as a badge. */
	isNew: boolean;
	summary: RowSummary;
	/** The loaded entry; its strings are raw and must be sanitised before display. */
	entry?: LoadedEntry;
	/** Arrival order, the last tie-breaker of every sort. */
	seq: number;
};

export type DetailState = {
	tab: TabId;
	/** Cursor line and first visible line, per tab. Reset when the selected file changes. */
	cursor: Record<TabId, number>;
	scroll: Record<TabId, number>;
	metadataQuery: string;
	tagsQuery: string;
	tagsMode: 'merged' | 'per-dir';
	/** Tags picked for the OSC 52 copy. */
	tagsSelected: string[];
	moduleSort: 'block' | 'norm';
	/** Overview: show every field's definition inline (the cursor's is always shown). */
	explain: boolean;
};

export type InputTarget = 'filter' | 'metadata-search' | 'tags-search';

export type InputState = {
	target: InputTarget;
	text: string;
	/** Restored on Esc. */
	previous: string;
};

export type StatsSlot = {
	state: 'running' | 'done' | 'error' | 'cancelled';
	jobId: string;
	path: string;
	done: number;
	total: number;
	result?: LoraStats;
	error?: string;
};

export type JobInfo = {
	kind: 'stats';
	/** Cache key of the result slot (path + size + mtime). */
	key: string;
	label: string;
	done: number;
	total: number;
	state: 'running' | 'done' | 'error' | 'cancelled';
};

export type EngineState = {
	state: 'off' | 'starting' | 'ready' | 'failed';
	device?: string;
	detail?: string;
};

export type StatusMessage = {text: string; level: 'info' | 'warn' | 'error'};

export type LogLine = {level: 'debug' | 'info' | 'warn' | 'error'; message: string; time: number};

export type CompareState = {
	/** Files compared, oldest epoch first for a series. */
	paths: string[];
	cursor: number;
	scroll: number;
	/** Series view: index of the block whose norm is charted. */
	block: number;
};

export type Viewport = {
	listRows: number;
	detailRows: number;
	detailWidth: number;
	bodyRows: number;
	bodyWidth: number;
};

export type ScanState = {
	state: 'idle' | 'scanning' | 'loading' | 'ready' | 'failed';
	found: number;
	loaded: number;
	error?: string;
	startedAt?: number;
	/** Milliseconds from scan start to the first rows on screen, and to the last entry loaded. */
	firstRowsMs?: number;
	loadedMs?: number;
};

export type AppState = {
	folder: string;
	env: TerminalEnv;
	views: ViewId[];
	scan: ScanState;
	rows: ReadonlyMap<string, FileRow>;
	/** Paths of the visible rows: filtered, then sorted. */
	order: string[];
	selected: number;
	listScroll: number;
	sort: {key: SortKey; descending: boolean};
	filter: ParsedFilter;
	/** Marked paths in marking order. */
	marks: string[];
	detail: DetailState;
	input: InputState | null;
	stats: Readonly<Record<string, StatsSlot>>;
	jobs: Readonly<Record<string, JobInfo>>;
	engine: EngineState;
	status: StatusMessage | null;
	logs: LogLine[];
	compare: CompareState | null;
	helpScroll: number;
	logScroll: number;
	viewport: Viewport;
	nextSeq: number;
	/** Resize view, metadata editing, hashes and their engine jobs (tools-types.ts, reducer-tools.ts). */
	tools: ToolsState;
};
