// The whole screen, from state and layout: title bar, body (list + detail, or a full-body view),
// status line and help bar; or the too-small screen. The root is exactly rows-1 tall.
import {Box} from 'ink';
import {helpBarItems} from '../keymap.js';
import type {Layout} from '../layout.js';
import {cursorLine, currentTabLines} from '../state/detail-lines.js';
import {filterHint} from '../state/filter.js';
import {formatNumber} from '../state/format.js';
import {glyphs} from '../state/glyphs.js';
import {baseView, countFailed, runningJobs, selectedRow, topView, visibleRows} from '../state/selectors.js';
import {sortLabels} from '../state/sort.js';
import {clean} from '../state/text.js';
import type {AppState, TabId} from '../state/types.js';
import {HelpBar, StatusLine, TitleBar, type JobLine, type TitlePart} from './bars.js';
import {screenView} from '../state/reducer-tools.js';
import {toolStatusSegments} from '../state/tool-status.js';
import {LineRow} from './line-view.js';
import {EditPanel, ResizeView} from './tool-views.js';
import {DetailPane} from './detail-pane.js';
import {FileList} from './file-list.js';
import {CompareView, HelpOverlay, LogView} from './overlays.js';
import {TooSmall} from './too-small.js';

const tabHints: Readonly<Record<TabId, string>> = {
	overview: 'j/k move over the fields; the definition of the one under the cursor shows here; i shows all',
	metadata: '/ searches keys and values; long JSON values are pretty-printed; j/k scroll',
	tags: 'space picks tags, y copies them (OSC 52), m switches merged/per dir, / searches',
	dataset: 'training and regularisation dirs, sizes and aspect-ratio buckets',
	blocks: 'o sorts the module table by block or by norm',
};

/** Long folder paths keep their end, which names the folder. */
function folderTail(folder: string, width: number, mark: string): string {
	const chars = [...folder];
	return chars.length <= width ? folder : mark + chars.slice(chars.length - (width - mark.length)).join('');
}

function titleParts(state: AppState): TitlePart[] {
	const {env} = state;
	const g = glyphs(env);
	const total = state.rows.size;
	const failed = countFailed(state);
	const parts: TitlePart[] = [
		{text: 'lorascope ', role: 'heading'},
		{text: `${folderTail(clean(state.folder, env, 4096), 48, g.ellipsis)}  `, role: 'dim'},
		{text: state.order.length === total ? `${total} ${total === 1 ? 'file' : 'files'}` : `${state.order.length} of ${total} ${total === 1 ? 'file' : 'files'}`},
	];
	if (failed > 0) {
		parts.push({text: `, ${failed} failed`, role: 'error'});
	}

	if (state.scan.state === 'scanning' || state.scan.state === 'loading') {
		parts.push({text: `  loading ${state.scan.loaded}/${state.scan.found}`, role: 'accent'});
	}

	parts.push({text: `  sort ${sortLabels[state.sort.key]}${env.unicode ? (state.sort.descending ? g.down : g.up) : state.sort.descending ? ' desc' : ' asc'}`, role: 'dim'});
	if (state.filter.source.trim() !== '') {
		parts.push({text: `  filter ${clean(state.filter.source, env, 40)}`, role: 'accent'});
	}

	if (state.marks.length > 0) {
		parts.push({text: `  ${state.marks.length} marked`, role: 'accent'});
	}

	if (state.engine.state === 'ready' && state.engine.device) {
		parts.push({text: `  engine ${state.engine.device}`, role: 'dim'});
	} else if (state.engine.state === 'failed') {
		parts.push({text: '  engine failed (L)', role: 'error'});
	}

	return parts;
}

function jobLine(state: AppState): JobLine | undefined {
	const [, job] = runningJobs(state)[0] ?? [];
	return job ? {label: clean(job.label, state.env, 80), done: job.done, total: job.total} : undefined;
}

function fallbackStatus(state: AppState): string {
	const row = selectedRow(state);
	if (!row) {
		return state.scan.state === 'ready' && state.rows.size === 0 ? 'No LoRA files (.safetensors) in this folder.' : '';
	}

	const where = row.folder === '.' ? row.name : `${row.folder}/${row.name}`;
	if (row.status === 'error') {
		return `${where}: ${row.error ?? 'unreadable'}`;
	}

	const timing = state.scan.loadedMs === undefined ? '' : `  (${state.rows.size} ${state.rows.size === 1 ? 'header' : 'headers'} read in ${formatNumber(state.scan.loadedMs / 1000, 2)} s)`;
	return `${where}${timing}`;
}

export function Frame({state, layout, now}: {state: AppState; layout: Layout; now: number}) {
	const {env} = state;
	if (layout.mode === 'too-small') {
		return <TooSmall columns={layout.columns} rows={layout.rows} env={env} />;
	}

	const base = baseView(state);
	const top = topView(state);
	const bodyHeight = layout.body.height;
	let body;
	if (top === 'help') {
		body = <HelpOverlay state={state} width={layout.columns} height={bodyHeight} />;
	} else if (top === 'edit-value' && state.tools.edit && state.tools.edit.mode !== 'resize-param') {
		body = <EditPanel state={state} width={layout.columns} height={bodyHeight} />;
	} else if (screenView(state) === 'resize') {
		body = <ResizeView state={state} width={layout.columns} height={bodyHeight} />;
	} else if (base === 'compare') {
		body = <CompareView state={state} width={layout.columns} height={bodyHeight} />;
	} else if (base === 'log') {
		body = <LogView state={state} width={layout.columns} height={bodyHeight} />;
	} else {
		const detailFocused = base === 'detail';
		const rows = visibleRows(state);
		const selected = selectedRow(state);
		const selectedIndex = selected ? rows.indexOf(selected) : -1;
		const position = state.order.length === 0 ? '' : ` ${state.selected + 1}/${state.order.length}`;
		const emptyText =
			state.rows.size === 0
				? state.scan.state === 'ready' || state.scan.state === 'failed'
					? 'No LoRA files here.'
					: `Scanning${glyphs(env).ellipsis}`
				: 'No file matches the filter (esc clears it).';
		const cursor = state.detail.cursor[state.detail.tab];
		const hint = (detailFocused ? cursorLine(state)?.hint : undefined) ?? tabHints[state.detail.tab];
		body = (
			<Box flexDirection={layout.mode === 'wide' ? 'row' : 'column'} height={bodyHeight}>
				<FileList
					rows={rows}
					selectedIndex={selectedIndex}
					marks={new Set(state.marks)}
					sort={state.sort}
					width={layout.list.width}
					height={layout.list.height}
					focused={!detailFocused}
					env={env}
					now={now}
					emptyText={emptyText}
					position={position}
				/>
				<DetailPane
					title={selected ? selected.name : ''}
					tab={state.detail.tab}
					lines={currentTabLines(state)}
					cursor={cursor}
					scroll={state.detail.scroll[state.detail.tab]}
					hint={hint}
					width={layout.detail.width}
					height={layout.detail.height}
					focused={detailFocused}
					env={env}
				/>
			</Box>
		);
	}

	// Confirmations, the resize parameter input and tools jobs (issues 4 and 5) take the status line.
	const toolStatus = toolStatusSegments(state, layout.columns);
	const inputHint = state.input?.target === 'filter' ? [...state.filter.errors, filterHint].join(' · ') : 'type to search · enter keeps it · esc cancels';
	return (
		<Box flexDirection="column" width={layout.columns} height={layout.rootHeight} overflow="hidden">
			<TitleBar parts={titleParts(state)} width={layout.columns} env={env} />
			{body}
			{toolStatus ? (
				<LineRow line={{segments: toolStatus}} env={env} width={layout.columns} highlighted={false} />
			) : (
				<StatusLine status={state.status} input={state.input} inputHint={inputHint} job={jobLine(state)} fallback={fallbackStatus(state)} width={layout.columns} env={env} />
			)}
			<HelpBar items={helpBarItems(state)} width={layout.columns} env={env} />
		</Box>
	);
}
