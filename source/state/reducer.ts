// The dashboard's pure reducer: AppState + Action → AppState. No I/O, no clocks (times arrive in
// actions), so every transition is unit-tested without rendering. Slices: list (rows, order, selection,
// sort, filter, marks), views (stack, input, help), detail (tabs, cursors), jobs (stats by id).
import type {LoraStats} from '../lora/types.js';
import {currentTabLines} from './detail-lines.js';
import type {LoadedEntry} from './entry-shape.js';
import {filterSubject, pendingRow, rowFromEntry, type FoundFile} from './file-row.js';
import {matchFilter, parseFilter, isEmptyFilter} from './filter.js';
import {selectedPath, topView} from './selectors.js';
import {defaultDescending, nextSortKey, sortRows} from './sort.js';
import {toolsReducer, type ToolAction} from './reducer-tools.js';
import {initialTools} from './tools-types.js';
import {
	sortKeys,
	tabIds,
	type AppState,
	type CompareState,
	type DetailState,
	type EngineState,
	type FileRow,
	type InputTarget,
	type LogLine,
	type StatusMessage,
	type TabId,
	type TerminalEnv,
	type ViewId,
	type Viewport,
} from './types.js';

export type Action =
	| {type: 'viewport'; viewport: Viewport}
	| {type: 'scan-started'; now: number}
	| {type: 'files-found'; files: FoundFile[]; now: number}
	| {type: 'entries-loaded'; entries: LoadedEntry[]; now: number}
	| {type: 'scan-finished'; now: number}
	| {type: 'scan-failed'; error: string}
	| {type: 'file-updated'; entry: LoadedEntry}
	/** The same file read again with more detail (exact alphas): no badge, no reordering of the scan count. */
	| {type: 'entry-refined'; entry: LoadedEntry}
	| {type: 'file-removed'; path: string}
	| {type: 'move'; delta: number}
	| {type: 'move-page'; direction: 1 | -1}
	| {type: 'move-edge'; edge: 'first' | 'last'}
	| {type: 'select-path'; path: string}
	| {type: 'sort-next'}
	| {type: 'sort-reverse'}
	| {type: 'filter-set'; text: string}
	| {type: 'toggle-mark'}
	| {type: 'clear-marks'}
	| {type: 'push-view'; view: ViewId}
	| {type: 'pop-view'}
	| {type: 'tab-set'; tab: TabId}
	| {type: 'tab-cycle'; delta: number}
	| {type: 'detail-move'; delta: number}
	| {type: 'detail-page'; direction: 1 | -1}
	| {type: 'detail-edge'; edge: 'first' | 'last'}
	| {type: 'input-open'; target: InputTarget}
	| {type: 'input-text'; text: string}
	| {type: 'input-commit'}
	| {type: 'input-cancel'}
	| {type: 'tags-mode-toggle'}
	| {type: 'tags-select-toggle'; tag: string}
	| {type: 'tags-select-clear'}
	| {type: 'modules-sort-toggle'}
	| {type: 'explain-toggle'}
	| {type: 'stats-started'; key: string; jobId: string; path: string; label: string}
	| {type: 'job-progress'; jobId: string; done: number; total: number}
	| {type: 'job-result'; jobId: string; result: LoraStats}
	| {type: 'job-error'; jobId: string; error: string}
	| {type: 'job-cancelled'; jobId: string}
	| {type: 'engine'; engine: EngineState}
	| {type: 'log'; line: LogLine}
	| {type: 'status'; status: StatusMessage | null}
	| {type: 'compare-open'; paths: string[]}
	| {type: 'compare-move'; delta: number}
	| {type: 'compare-block'; delta: number}
	| {type: 'help-scroll'; delta: number}
	| {type: 'log-scroll'; delta: number}
	/** Resize view, metadata editing, hashes (issues 4 and 5): reducer-tools.ts. */
	| ToolAction;

const maxLogLines = 500;

function emptyPerTab(): Record<TabId, number> {
	return {overview: 0, metadata: 0, tags: 0, dataset: 0, blocks: 0};
}

export function initialDetail(): DetailState {
	return {
		tab: 'overview',
		cursor: emptyPerTab(),
		scroll: emptyPerTab(),
		metadataQuery: '',
		tagsQuery: '',
		tagsMode: 'merged',
		tagsSelected: [],
		moduleSort: 'block',
		explain: false,
	};
}

export function initialState(folder: string, env: TerminalEnv): AppState {
	return {
		folder,
		env,
		views: ['files'],
		scan: {state: 'idle', found: 0, loaded: 0},
		rows: new Map(),
		order: [],
		selected: 0,
		listScroll: 0,
		sort: {key: 'modified', descending: defaultDescending.modified},
		filter: parseFilter(''),
		marks: [],
		detail: initialDetail(),
		input: null,
		stats: {},
		jobs: {},
		engine: {state: 'off'},
		status: null,
		logs: [],
		compare: null,
		helpScroll: 0,
		logScroll: 0,
		viewport: {listRows: 20, detailRows: 20, detailWidth: 60, bodyRows: 20, bodyWidth: 80},
		nextSeq: 0,
		tools: initialTools(),
	};
}

const clamp = (value: number, lo: number, hi: number): number => Math.min(Math.max(value, lo), Math.max(lo, hi));

// ---- list slice -------------------------------------------------------------------------------

function computeOrder(state: AppState): string[] {
	const candidates: FileRow[] = [];
	const filtering = !isEmptyFilter(state.filter);
	for (const row of state.rows.values()) {
		if (!filtering || matchFilter(state.filter, filterSubject(row, state.marks.includes(row.path)))) {
			candidates.push(row);
		}
	}

	return sortRows(candidates, state.sort.key, state.sort.descending).map(row => row.path);
}

/** Keeps the list scroll so the selected row is visible. */
function followSelection(state: AppState): AppState {
	const rows = Math.max(1, state.viewport.listRows);
	const maxScroll = Math.max(0, state.order.length - rows);
	let scroll = clamp(state.listScroll, 0, maxScroll);
	if (state.selected < scroll) {
		scroll = state.selected;
	} else if (state.selected >= scroll + rows) {
		scroll = state.selected - rows + 1;
	}

	return scroll === state.listScroll ? state : {...state, listScroll: scroll};
}

/** What changes when the selected file changes: per-file detail positions and the "new" badge. */
function onSelectionChange(before: AppState, after: AppState): AppState {
	const previous = selectedPath(before);
	const current = selectedPath(after);
	if (previous === current) {
		return after;
	}

	let next = after;
	const left = previous === undefined ? undefined : next.rows.get(previous);
	if (left?.isNew) {
		// The badge has been seen once the user moves on from the file.
		const rows = new Map(next.rows);
		rows.set(left.path, {...left, isNew: false});
		next = {...next, rows};
	}

	return {
		...next,
		detail: {...next.detail, cursor: emptyPerTab(), scroll: emptyPerTab(), tagsSelected: []},
	};
}

/**
 * The path the selection should stay on when the order changes: the same file, except for a user at
 * the top of the list, who follows the top (newest first: files arriving while the folder loads or
 * while watching).
 */
function anchorPath(state: AppState): string | undefined {
	return state.selected === 0 ? undefined : selectedPath(state);
}

/** Recomputes the visible order, keeping the selection on the same file when it is still listed. */
function reorder(state: AppState, keepPath = anchorPath(state)): AppState {
	const order = computeOrder(state);
	let selected = keepPath === undefined ? -1 : order.indexOf(keepPath);
	if (selected < 0) {
		selected = clamp(state.selected, 0, order.length - 1);
	}

	return onSelectionChange(state, followSelection({...state, order, selected}));
}

function select(state: AppState, index: number): AppState {
	const selected = clamp(index, 0, state.order.length - 1);
	if (selected === state.selected) {
		return state;
	}

	return onSelectionChange(state, followSelection({...state, selected}));
}

function addRows(state: AppState, rows: FileRow[]): AppState {
	const map = new Map(state.rows);
	for (const row of rows) {
		map.set(row.path, row);
	}

	return {...state, rows: map};
}

function entriesLoaded(state: AppState, entries: LoadedEntry[], now: number): AppState {
	const rows: FileRow[] = [];
	let seq = state.nextSeq;
	for (const entry of entries) {
		const existing = state.rows.get(entry.path);
		rows.push(rowFromEntry(entry, state.folder, state.env, existing?.seq ?? seq++, existing?.isNew ?? false));
	}

	const loaded = state.scan.loaded + entries.length;
	const scan = {...state.scan, loaded};
	if (loaded >= scan.found && scan.state === 'loading' && scan.startedAt !== undefined) {
		scan.loadedMs = now - scan.startedAt;
	}

	return reorder(addRows({...state, nextSeq: seq, scan}, rows));
}

function fileUpdated(state: AppState, entry: LoadedEntry): AppState {
	const atTop = state.selected === 0;
	const existing = state.rows.get(entry.path);
	const row = rowFromEntry(entry, state.folder, state.env, existing?.seq ?? state.nextSeq, true);
	const next = addRows({...state, nextSeq: existing ? state.nextSeq : state.nextSeq + 1}, [row]);
	// A user at the top of the list is following the newest files: select the new one.
	const keep = atTop ? undefined : selectedPath(state);
	// A rewritten file has a new size/mtime, so its stats key changes and old results are not reused.
	return reorder(next, keep);
}

function fileRemoved(state: AppState, path: string): AppState {
	if (!state.rows.has(path)) {
		return state;
	}

	const rows = new Map(state.rows);
	rows.delete(path);
	const marks = state.marks.filter(p => p !== path);
	const wasSelected = selectedPath(state) === path;
	const next = {...state, rows, marks};
	return reorder(next, wasSelected ? state.order[state.selected + 1] ?? state.order[state.selected - 1] : selectedPath(state));
}

// ---- views slice ------------------------------------------------------------------------------

function pushView(state: AppState, view: ViewId): AppState {
	if (topView(state) === view) {
		return state;
	}

	// A view opens once: pushing one that is already lower in the stack brings it to the top.
	const views = [...state.views.filter(v => v !== view || v === 'files'), view];
	return {...state, views, helpScroll: view === 'help' ? 0 : state.helpScroll};
}

function popView(state: AppState): AppState {
	if (state.views.length <= 1) {
		return state;
	}

	const top = topView(state);
	const views = state.views.slice(0, -1);
	return {...state, views, input: top === 'input' ? null : state.input, compare: top === 'compare' ? null : state.compare};
}

function inputText(state: AppState, target: InputTarget): string {
	switch (target) {
		case 'filter': {
			return state.filter.source;
		}

		case 'metadata-search': {
			return state.detail.metadataQuery;
		}

		case 'tags-search': {
			return state.detail.tagsQuery;
		}
	}
}

/** Applies the input's text to its target as the user types (live filter and search). */
function applyInput(state: AppState, target: InputTarget, text: string): AppState {
	switch (target) {
		case 'filter': {
			return reorder({...state, filter: parseFilter(text)});
		}

		case 'metadata-search': {
			return {...state, detail: {...state.detail, metadataQuery: text, cursor: {...state.detail.cursor, metadata: 0}, scroll: {...state.detail.scroll, metadata: 0}}};
		}

		case 'tags-search': {
			return {...state, detail: {...state.detail, tagsQuery: text, cursor: {...state.detail.cursor, tags: 0}, scroll: {...state.detail.scroll, tags: 0}}};
		}
	}
}

// ---- detail slice -----------------------------------------------------------------------------

function setTab(state: AppState, tab: TabId): AppState {
	return tab === state.detail.tab ? state : {...state, detail: {...state.detail, tab}};
}

/**
 * Moves the cursor of the current tab by `delta` selectable lines (or scrolls, on tabs without
 * selectable lines) and keeps it in the window.
 */
function moveDetail(state: AppState, delta: number, edge?: 'first' | 'last'): AppState {
	const {tab} = state.detail;
	const lines = currentTabLines(state);
	const rows = Math.max(1, state.viewport.detailRows);
	const maxScroll = Math.max(0, lines.length - rows);
	const selectable: number[] = [];
	for (const [index, line] of lines.entries()) {
		if (line.key !== undefined) {
			selectable.push(index);
		}
	}

	let cursor = state.detail.cursor[tab];
	let scroll = state.detail.scroll[tab];
	if (selectable.length === 0) {
		scroll = edge === 'first' ? 0 : edge === 'last' ? maxScroll : clamp(scroll + delta, 0, maxScroll);
		cursor = scroll;
	} else {
		let position = selectable.findIndex(index => index >= cursor);
		// From a heading (or above the first field) the first step down lands on the next field.
		const between = position < 0 || selectable[position] !== cursor;
		if (position < 0) {
			position = selectable.length;
		}

		const step = between && delta > 0 ? delta - 1 : delta;
		position = edge === 'first' ? 0 : edge === 'last' ? selectable.length - 1 : clamp(position + step, 0, selectable.length - 1);
		cursor = selectable[position]!;
		if (cursor < scroll) {
			// Show the heading above the first selectable line of a section.
			scroll = position === 0 ? 0 : cursor;
		} else if (cursor >= scroll + rows) {
			scroll = cursor - rows + 1;
		}

		scroll = clamp(scroll, 0, maxScroll);
	}

	return {...state, detail: {...state.detail, cursor: {...state.detail.cursor, [tab]: cursor}, scroll: {...state.detail.scroll, [tab]: scroll}}};
}

// ---- jobs slice -------------------------------------------------------------------------------

function jobFinished(state: AppState, jobId: string, patch: {state: 'done' | 'error' | 'cancelled'; result?: LoraStats; error?: string}): AppState {
	const job = state.jobs[jobId];
	if (!job) {
		return state; // Unknown or already forgotten job: a late event.
	}

	const jobs = {...state.jobs, [jobId]: {...job, state: patch.state}};
	const slot = state.stats[job.key];
	if (!slot || slot.jobId !== jobId) {
		// Replaced by a newer job for the same file: drop the late result.
		return {...state, jobs};
	}

	const stats = {
		...state.stats,
		[job.key]: {...slot, state: patch.state, result: patch.result, error: patch.error, done: patch.state === 'done' ? slot.total : slot.done},
	};
	return {...state, jobs, stats};
}

// ---- root -------------------------------------------------------------------------------------

export function reducer(state: AppState, action: Action): AppState {
	switch (action.type) {
		case 'viewport': {
			const v = action.viewport;
			const same =
				v.listRows === state.viewport.listRows &&
				v.detailRows === state.viewport.detailRows &&
				v.detailWidth === state.viewport.detailWidth &&
				v.bodyRows === state.viewport.bodyRows &&
				v.bodyWidth === state.viewport.bodyWidth;
			return same ? state : followSelection({...state, viewport: v});
		}

		case 'scan-started': {
			return {...state, scan: {state: 'scanning', found: 0, loaded: 0, startedAt: action.now}};
		}

		case 'files-found': {
			let seq = state.nextSeq;
			const rows = action.files.filter(file => !state.rows.has(file.path)).map(file => pendingRow(file, state.folder, state.env, seq++));
			const scan = {...state.scan, state: 'loading' as const, found: state.scan.found + action.files.length};
			if (scan.firstRowsMs === undefined && scan.startedAt !== undefined) {
				scan.firstRowsMs = action.now - scan.startedAt;
			}

			return reorder(addRows({...state, nextSeq: seq, scan}, rows));
		}

		case 'entries-loaded': {
			return entriesLoaded(state, action.entries, action.now);
		}

		case 'scan-finished': {
			const scan = {...state.scan, state: 'ready' as const};
			if (scan.startedAt !== undefined) {
				scan.loadedMs ??= action.now - scan.startedAt;
			}

			return {...state, scan};
		}

		case 'scan-failed': {
			return {...state, scan: {...state.scan, state: 'failed', error: action.error}, status: {text: action.error, level: 'error'}};
		}

		case 'file-updated': {
			return fileUpdated(state, action.entry);
		}

		case 'entry-refined': {
			const existing = state.rows.get(action.entry.path);
			if (!existing || existing.mtimeMs !== action.entry.mtimeMs || existing.sizeBytes !== action.entry.sizeBytes) {
				return state; // The file changed meanwhile; the watcher brings the new version.
			}

			const row = rowFromEntry(action.entry, state.folder, state.env, existing.seq, existing.isNew);
			return reorder(addRows(state, [row]));
		}

		case 'file-removed': {
			return fileRemoved(state, action.path);
		}

		case 'move': {
			return select(state, state.selected + action.delta);
		}

		case 'move-page': {
			return select(state, state.selected + action.direction * Math.max(1, state.viewport.listRows - 1));
		}

		case 'move-edge': {
			return select(state, action.edge === 'first' ? 0 : state.order.length - 1);
		}

		case 'select-path': {
			const index = state.order.indexOf(action.path);
			return index < 0 ? state : select(state, index);
		}

		case 'sort-next': {
			const key = nextSortKey(state.sort.key, sortKeys);
			return reorder({...state, sort: {key, descending: defaultDescending[key]}});
		}

		case 'sort-reverse': {
			return reorder({...state, sort: {...state.sort, descending: !state.sort.descending}});
		}

		case 'filter-set': {
			return reorder({...state, filter: parseFilter(action.text)});
		}

		case 'toggle-mark': {
			const path = selectedPath(state);
			if (path === undefined) {
				return state;
			}

			const marks = state.marks.includes(path) ? state.marks.filter(p => p !== path) : [...state.marks, path];
			// Marking moves down, so a run of epochs is marked with repeated presses.
			return select({...state, marks}, state.selected + 1);
		}

		case 'clear-marks': {
			return {...state, marks: []};
		}

		case 'push-view': {
			return pushView(state, action.view);
		}

		case 'pop-view': {
			return popView(state);
		}

		case 'tab-set': {
			return setTab(state, action.tab);
		}

		case 'tab-cycle': {
			const index = tabIds.indexOf(state.detail.tab);
			const next = tabIds[(index + action.delta + tabIds.length) % tabIds.length] ?? 'overview';
			return setTab(state, next);
		}

		case 'detail-move': {
			return moveDetail(state, action.delta);
		}

		case 'detail-page': {
			return moveDetail(state, action.direction * Math.max(1, state.viewport.detailRows - 1));
		}

		case 'detail-edge': {
			return moveDetail(state, 0, action.edge);
		}

		case 'input-open': {
			const text = inputText(state, action.target);
			return pushView({...state, input: {target: action.target, text, previous: text}}, 'input');
		}

		case 'input-text': {
			if (!state.input) {
				return state;
			}

			return applyInput({...state, input: {...state.input, text: action.text}}, state.input.target, action.text);
		}

		case 'input-commit': {
			return state.input ? popView(state) : state;
		}

		case 'input-cancel': {
			if (!state.input) {
				return state;
			}

			return popView(applyInput(state, state.input.target, state.input.previous));
		}

		case 'tags-mode-toggle': {
			return {
				...state,
				detail: {...state.detail, tagsMode: state.detail.tagsMode === 'merged' ? 'per-dir' : 'merged', cursor: {...state.detail.cursor, tags: 0}, scroll: {...state.detail.scroll, tags: 0}},
			};
		}

		case 'tags-select-toggle': {
			const selected = state.detail.tagsSelected.includes(action.tag)
				? state.detail.tagsSelected.filter(tag => tag !== action.tag)
				: [...state.detail.tagsSelected, action.tag];
			return moveDetail({...state, detail: {...state.detail, tagsSelected: selected}}, 1);
		}

		case 'tags-select-clear': {
			return {...state, detail: {...state.detail, tagsSelected: []}};
		}

		case 'modules-sort-toggle': {
			return {...state, detail: {...state.detail, moduleSort: state.detail.moduleSort === 'block' ? 'norm' : 'block'}};
		}

		case 'explain-toggle': {
			// Definitions add lines: keep the cursor on the same field.
			const key = currentTabLines(state)[state.detail.cursor[state.detail.tab]]?.key;
			const next = {...state, detail: {...state.detail, explain: !state.detail.explain}};
			const index = key === undefined ? -1 : currentTabLines(next).findIndex(l => l.key === key);
			return index < 0 ? next : moveDetail({...next, detail: {...next.detail, cursor: {...next.detail.cursor, [next.detail.tab]: index}}}, 0);
		}

		case 'stats-started': {
			const previous = state.stats[action.key];
			const jobs = {...state.jobs, [action.jobId]: {kind: 'stats' as const, key: action.key, label: action.label, done: 0, total: 0, state: 'running' as const}};
			if (previous && previous.state === 'running' && jobs[previous.jobId]) {
				jobs[previous.jobId] = {...jobs[previous.jobId]!, state: 'cancelled'};
			}

			return {
				...state,
				jobs,
				stats: {...state.stats, [action.key]: {state: 'running', jobId: action.jobId, path: action.path, done: 0, total: 0}},
			};
		}

		case 'job-progress': {
			const job = state.jobs[action.jobId];
			if (!job || job.state !== 'running') {
				return state;
			}

			const slot = state.stats[job.key];
			const jobs = {...state.jobs, [action.jobId]: {...job, done: action.done, total: action.total}};
			const stats = slot && slot.jobId === action.jobId ? {...state.stats, [job.key]: {...slot, done: action.done, total: action.total}} : state.stats;
			return {...state, jobs, stats};
		}

		case 'job-result': {
			return jobFinished(state, action.jobId, {state: 'done', result: action.result});
		}

		case 'job-error': {
			const next = jobFinished(state, action.jobId, {state: 'error', error: action.error});
			return next === state ? state : {...next, status: {text: action.error, level: 'error'}};
		}

		case 'job-cancelled': {
			return jobFinished(state, action.jobId, {state: 'cancelled'});
		}

		case 'engine': {
			return {...state, engine: action.engine};
		}

		case 'log': {
			const logs = state.logs.length >= maxLogLines ? [...state.logs.slice(1 - maxLogLines), action.line] : [...state.logs, action.line];
			return {...state, logs};
		}

		case 'status': {
			return state.status === action.status ? state : {...state, status: action.status};
		}

		case 'compare-open': {
			const compare: CompareState = {paths: action.paths, cursor: 0, scroll: 0, block: 0};
			return pushView({...state, compare}, 'compare');
		}

		case 'compare-move': {
			if (!state.compare) {
				return state;
			}

			return {...state, compare: {...state.compare, scroll: Math.max(0, state.compare.scroll + action.delta)}};
		}

		case 'compare-block': {
			if (!state.compare) {
				return state;
			}

			return {...state, compare: {...state.compare, block: Math.max(0, state.compare.block + action.delta)}};
		}

		case 'help-scroll': {
			return {...state, helpScroll: Math.max(0, state.helpScroll + action.delta)};
		}

		case 'log-scroll': {
			return {...state, logScroll: Math.max(0, state.logScroll + action.delta)};
		}

		default: {
			return toolsReducer(state, action);
		}
	}
}
