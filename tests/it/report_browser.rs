//! Renders a synthetic report and loads it in headless Debian Chromium: the page must produce a
//! real screenshot, its DOM must hold the expected ranking, tables, chart and treemap elements and
//! the chunk appendix, every in-page link must resolve to an element, following a chunk link must
//! open the collapsed appendix, and the browser must log no script errors.
//!
//! Needs `/usr/bin/chromium` (installed by `./scripts/test.sh`). No network, no Python.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use orchestrate::cell::{AnswerStatus, CellAxes, Retrieval};
use orchestrate::report::{render_html, ChunkSet, ChunkText, ReportMeta};
use orchestrate::retrieve::{Bm25Variant, DenseIndexKind};
use orchestrate::store::AnswerRecord;

const CHROMIUM: &str = "/usr/bin/chromium";
const MODELS: [&str; 2] = ["qwen2.5-coder-0.5b", "smollm2-135m"];
const CHUNKS: [u32; 5] = [250, 500, 1000, 1500, 2000];
const RETRIEVERS: [&str; 2] = ["dense", "ensemble"];
const QUESTIONS: usize = 10;
/// Indices (in generation order) of rows marked failed; none empties a cell or a question.
const FAILED_ROWS: [usize; 4] = [3, 57, 118, 171];

/// Deterministic pseudo-random numbers in [0, 1) (64-bit LCG, Knuth's MMIX constants).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// 2 models × 5 chunk sizes × 2 retrievers × 10 questions = 200 answers, 4 of them failed.
fn synthetic_answers() -> Vec<AnswerRecord> {
    let mut rng = Lcg(42);
    let mut rows = Vec::new();
    for (mi, model) in MODELS.iter().enumerate() {
        for &chunk in &CHUNKS {
            for retriever in RETRIEVERS {
                for q in 0..QUESTIONS {
                    let speed = if mi == 0 { 2.5 } else { 1.0 };
                    let time = speed * (1.0 + f64::from(chunk) / 800.0) * (0.7 + 0.6 * rng.next());
                    let cosine =
                        0.35 + 0.04 * q as f64 / 2.0 + 0.15 * (mi as f64) + 0.2 * rng.next();
                    let tokens = 20 + (80.0 * rng.next()) as u32;
                    let rss = (if mi == 0 { 620u64 } else { 310 }) << 20;
                    let ensemble = retriever == "ensemble";
                    let mut a = AnswerRecord {
                        cell: CellAxes {
                            cell_id: format!("{model}-{chunk}-{retriever}"),
                            model: model.to_string(),
                            retrieval: Retrieval {
                                chunk_size: chunk as usize,
                                chunk_overlap: chunk as usize / 10,
                                retriever: retriever.parse().expect("retriever"),
                                top_k: 4,
                                fetch_k: None,
                                lambda_mult: None,
                                ensemble_weight: ensemble.then_some(0.5),
                                bm25: ensemble.then_some(Bm25Variant::Tantivy),
                                dense_index: Some(DenseIndexKind::Arroy),
                                // a long name, as a user's own definitions have: its facet
                                // title must still fit its panel
                                name: ensemble
                                    .then(|| "seed notebook hybrid of bm25 and dense".into()),
                                members: None,
                                child_chunk_size: None,
                                child_chunk_overlap: None,
                            },
                        },
                        index_dir: Some(format!("store/indexes/i{chunk}")),
                        repeat: 0,
                        question_id: format!("q{}", q + 1),
                        question: format!(
                            "How do I configure <option {q}> & \"friends\" in bacula-dir.conf?"
                        ),
                        expected_answer: format!("Set Option{q} = yes, in the Director resource."),
                        answer: format!("You set it,\nlike \"this\" <b>{q}</b>."),
                        cosine: Some(cosine.min(0.99)),
                        response_time_s: Some(time),
                        ttft_s: Some(time * 0.2),
                        retrieval_s: Some(0.01),
                        prompt_tokens: Some(300 + chunk / 4),
                        completion_tokens: Some(tokens),
                        rss_mean_bytes: Some(rss - (40 << 20)),
                        rss_peak_bytes: Some(rss + ((rng.next() * 30.0) as u64) * (1 << 20)),
                        cpu_mean_percent: Some(150.0 + 40.0 * rng.next()),
                        // the long chunks overflow the context window: only the first is given
                        contexts_used: Some(if chunk >= 1000 { 1 } else { 2 }),
                        chunk_ids: vec![q as u32, q as u32 + 7],
                        pages: vec![12 + q as u32, 200],
                        status: AnswerStatus::Ok,
                        error: None,
                        decode_mode: None,
                        shared_from: None,
                        judge_missing: Default::default(),
                        metrics: {
                            let hit = f64::from(rng.next() < 0.5 + 0.1 * mi as f64);
                            let f1 = (0.2 + 0.3 * rng.next()).min(1.0);
                            [
                                ("hit@4", hit),
                                ("mrr@4", hit / (1.0 + (3.0 * rng.next()).floor())),
                                ("ndcg@4", hit * 0.7),
                                ("recall@4", hit * 0.5),
                                ("f1", f1),
                                ("em", 0.0),
                                ("rouge_l", f1 * 0.9),
                            ]
                            .into_iter()
                            .map(|(k, v)| (k.to_string(), v))
                            .collect()
                        },
                    };
                    if FAILED_ROWS.contains(&rows.len()) {
                        a.status = AnswerStatus::Failed;
                        a.error = Some("worker exited early".into());
                        a.answer = String::new();
                        a.cosine = None;
                        a.response_time_s = None;
                        a.ttft_s = None;
                        a.completion_tokens = None;
                        a.rss_mean_bytes = None;
                        a.rss_peak_bytes = None;
                        a.cpu_mean_percent = None;
                    }
                    rows.push(a);
                }
            }
        }
    }
    rows
}

/// Runs Chromium headless with the flags of the project's browser tests plus `extra`, with a
/// timeout; returns (stdout, stderr).
fn run_chromium(profile: &Path, extra: &[String], page: &Path) -> (String, String) {
    let mut args: Vec<String> = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--enable-logging=stderr",
        "--v=0",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.push(format!("--user-data-dir={}", profile.display()));
    args.extend(extra.iter().cloned());
    args.push(format!("file://{}", page.display()));
    let out_dir = profile.parent().expect("profile has a parent");
    let stdout_path = out_dir.join(format!(
        "{}.stdout",
        profile.file_name().unwrap().to_string_lossy()
    ));
    let stderr_path = out_dir.join(format!(
        "{}.stderr",
        profile.file_name().unwrap().to_string_lossy()
    ));
    let mut child = Command::new(CHROMIUM)
        .args(&args)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout_path).unwrap())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .expect("start chromium");
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("wait for chromium") {
            assert!(status.success(), "chromium exited with {status}");
            break;
        }
        if started.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium did not finish within 120 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    (
        std::fs::read_to_string(stdout_path).unwrap(),
        std::fs::read_to_string(stderr_path).unwrap(),
    )
}

/// Script appended to a copy of the page: sets `data-overflow` on `<html>` to the elements
/// (outside `.scroll` boxes) whose right edge passes the window's, empty when none does.
const OVERFLOW_PROBE: &str = r#"<script>window.addEventListener("load",()=>{const w=document.documentElement.clientWidth;const out=[];for(const e of document.querySelectorAll("body *")){if(e.closest(".scroll"))continue;const r=e.getBoundingClientRect();if(r.right>w+1)out.push(e.tagName+" "+(e.textContent||"").trim().slice(0,50));}document.documentElement.setAttribute("data-overflow",out.slice(0,5).join(" | "));});</script></body>"#;

/// The serialized `<svg id="{id}" …>…</svg>` element of a DOM dump.
fn svg_section<'a>(dom: &'a str, id: &str) -> &'a str {
    let start = dom
        .find(&format!(r#"<svg id="{id}""#))
        .unwrap_or_else(|| panic!("no <svg id={id}> in DOM"));
    let end = dom[start..].find("</svg>").expect("closing </svg>");
    &dom[start..start + end]
}

/// Script errors and console messages in Chromium's stderr log.
///
/// Chromium 156 logs every console message as `INFO:CONSOLE:<line>] "<text>"` whatever its level
/// (`console.error("boom")` and an uncaught exception look alike), and the report's script logs
/// nothing, so every CONSOLE line counts, as does any `Uncaught` exception.
fn console_errors(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|l| l.contains("Uncaught") || l.contains(":CONSOLE"))
        .collect()
}

/// Width and height from a PNG's IHDR chunk.
fn png_size(bytes: &[u8]) -> (u32, u32) {
    assert!(
        bytes.len() > 24 && bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
        "not a PNG"
    );
    assert_eq!(&bytes[12..16], b"IHDR");
    let w = u32::from_be_bytes(bytes[16..20].try_into().unwrap());
    let h = u32::from_be_bytes(bytes[20..24].try_into().unwrap());
    (w, h)
}

/// Chunk texts for every chunking of the synthetic sweep: ids 0..17 (all that answers use), with
/// text that needs escaping.
fn synthetic_chunk_sets() -> Vec<ChunkSet> {
    CHUNKS
        .iter()
        .map(|&size| ChunkSet {
            index_dir: format!("store/indexes/i{size}"),
            chunk_size: size,
            chunk_overlap: size / 10,
            chunks: (0..17u32)
                .map(|id| {
                    let text = format!(
                        "Chunk {id} of {size}: <Director> {{ Name = \"bacula-dir\" }} & more text. "
                    )
                    .repeat(3);
                    (
                        id,
                        ChunkText {
                            page: 12 + id,
                            text,
                        },
                    )
                })
                .collect(),
        })
        .collect()
}

/// Every `href="#…"` target and every `id="…"` of a DOM dump.
fn links_and_ids(dom: &str) -> (BTreeSet<&str>, BTreeSet<&str>) {
    let grab = |pat: &str| -> BTreeSet<&str> {
        dom.match_indices(pat)
            .map(|(i, _)| {
                let rest = &dom[i + pat.len()..];
                &rest[..rest.find('"').unwrap()]
            })
            .collect()
    };
    (grab(r##"href="#"##), grab(r#" id=""#))
}

/// The `<table id="{id}" …>…</table>` element of a DOM dump.
fn table_section<'a>(dom: &'a str, id: &str) -> &'a str {
    let start = dom
        .find(&format!(r#"<table id="{id}""#))
        .unwrap_or_else(|| panic!("no <table id={id}> in DOM"));
    let end = dom[start..].find("</table>").expect("closing </table>");
    &dom[start..start + end]
}

fn chromium_or_explain() {
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: run the README's test command `./scripts/test.sh` (it installs chromium)"
    );
}

#[test]
fn report_renders_in_headless_chromium() {
    chromium_or_explain();
    let answers = synthetic_answers();
    assert_eq!(answers.len(), 200);
    let meta = ReportMeta {
        experiment_name: "synthetic <sweep>".into(),
        experiment_file: "experiments/synthetic.toml".into(),
        run_started: Some("2026-11-21T10:00:00Z".into()),
        host: Some("AMD EPYC, 2 cores, 24 GiB".into()),
        index_builds: vec![("dense 250/25".into(), Some(31.2)), ("bm25 250/25".into(), None)],
        chunk_sets: synthetic_chunk_sets(),
        rank_metric: None,
        failed_cells: vec![(
            "broken · dense chunk 250/25 k=4".into(),
            "worker exited early (exit status: 1)".into(),
        )],
        unfinished_cells: vec![(
            "interrupted · dense chunk 250/25 k=4".into(),
            "interrupted".into(),
        )],
        eliminated_cells: vec![(
            "slow · bm25 chunk 1000/100 k=4".into(),
            "eliminated by racing after look 1: cosine -0.210 [-0.300, -0.120] vs the leader over 10 questions, adjusted p 1.20e-04 < 0.0125".into(),
        )],
        judge: orchestrate::report::JudgeNotes {
            judges: vec!["cc324af070c2ecbf:greedy:max_tokens=1024".into()],
            missing: vec![orchestrate::report::JudgeGap {
                cell: "slow · bm25 chunk 1000/100 k=4".into(),
                metric: "faithfulness".into(),
                undefined: 2,
                failed: 1,
                unjudged: 3,
                first_error: Some("judge output cut at max_tokens 1024 at step ragas.nli: raise [judge] max_tokens".into()),
            }],
            unjudged_answers: 3,
            agreements: vec![],
        },
    };
    let html = render_html("Synthetic report", &meta, &answers).expect("render");

    let dir = tempfile::tempdir().expect("tempdir");
    let page: PathBuf = dir.path().join("report.html");
    std::fs::write(&page, &html).unwrap();
    if let Ok(keep) = std::env::var("REPORT_BROWSER_KEEP") {
        // Debug aid: REPORT_BROWSER_KEEP=/tmp/x keeps the page and screenshot for inspection.
        std::fs::create_dir_all(&keep).unwrap();
        std::fs::write(Path::new(&keep).join("report.html"), &html).unwrap();
    }

    // Screenshot.
    let png = dir.path().join("shot.png");
    let (_, shot_err) = run_chromium(
        &dir.path().join("profile-shot"),
        &[
            format!("--screenshot={}", png.display()),
            "--window-size=1400,3000".into(),
        ],
        &page,
    );
    let bytes = std::fs::read(&png).expect("screenshot written");
    assert_eq!(png_size(&bytes), (1400, 3000));
    // A blank 1400 × 3000 page compresses to a few KiB; charts and tables do not.
    assert!(
        bytes.len() > 60_000,
        "screenshot only {} bytes: page looks empty",
        bytes.len()
    );
    if let Ok(keep) = std::env::var("REPORT_BROWSER_KEEP") {
        std::fs::write(Path::new(&keep).join("shot.png"), &bytes).unwrap();
    }

    // DOM after scripts ran.
    let (dom, dom_err) = run_chromium(
        &dir.path().join("profile-dom"),
        &["--dump-dom".into()],
        &page,
    );
    assert!(
        dom.contains(r#"data-js="ok""#),
        "inline script did not run to completion"
    );
    let groups = MODELS.len() * CHUNKS.len() * RETRIEVERS.len();
    for chart in ["chart-time", "chart-cosine"] {
        let svg = svg_section(&dom, chart);
        assert_eq!(
            svg.matches(r#"<circle class="pt""#).count(),
            groups,
            "{chart} points"
        );
        assert_eq!(
            svg.matches(r#"<g class="errbar""#).count(),
            groups,
            "{chart} error bars"
        );
        assert_eq!(
            svg.matches(r#"<g class="panel""#).count(),
            RETRIEVERS.len(),
            "{chart} facets"
        );
        assert_eq!(
            svg.matches(r#"<g class="series""#).count(),
            MODELS.len() * RETRIEVERS.len()
        );
    }
    for treemap in ["treemap-cosine", "treemap-time", "treemap-rss"] {
        let svg = svg_section(&dom, treemap);
        assert_eq!(
            svg.matches(r#"class="tm-leaf""#).count(),
            MODELS.len() * QUESTIONS,
            "{treemap}"
        );
        assert_eq!(
            svg.matches(r#"<g class="tm-group""#).count(),
            MODELS.len(),
            "{treemap}"
        );
    }
    // Retrieval chart: one panel per metric (Hit, MRR, nDCG), one series per retriever, pooled
    // over models; answer-metric charts like the cosine one.
    let svg = svg_section(&dom, "chart-retrieval");
    assert_eq!(svg.matches(r#"<g class="panel""#).count(), 3);
    assert_eq!(
        svg.matches(r#"<circle class="pt""#).count(),
        3 * CHUNKS.len() * RETRIEVERS.len()
    );
    assert_eq!(
        svg.matches(r#"<g class="series""#).count(),
        3 * RETRIEVERS.len()
    );
    for chart in ["chart-f1", "chart-rouge_l"] {
        let svg = svg_section(&dom, chart);
        assert_eq!(
            svg.matches(r#"<circle class="pt""#).count(),
            groups,
            "{chart}"
        );
    }
    // Cell tables: one row per cell; answers table: one row per answer; text escaped.
    let cells = table_section(&dom, "cell-table");
    assert_eq!(cells.matches("<tr>").count(), 1 + groups);
    for metric in [
        "cosine", "Hit@4", "Recall@4", "MRR@4", "nDCG@4", "EM", "F1", "ROUGE-L",
    ] {
        assert!(
            cells.contains(&format!("<th>{metric}<")),
            "quality column {metric}"
        );
    }
    assert_eq!(
        table_section(&dom, "perf-table").matches("<tr>").count(),
        1 + groups
    );
    assert_eq!(dom.matches(r#"<tr><td class="q""#).count(), answers.len());
    assert!(!dom.contains("<option 3>") && dom.contains("&lt;option 3&gt;"));
    assert!(dom.contains("synthetic &lt;sweep&gt;"));

    // Ranking (by cosine): one row per cell, exactly one best, every other cell compared.
    let ranking = table_section(&dom, "ranking-table");
    assert_eq!(ranking.matches("<tr class=\"rank-").count(), groups);
    assert_eq!(ranking.matches(r#"<tr class="rank-best""#).count(), 1);
    let worse = ranking.matches(r#"<tr class="rank-worse""#).count();
    let tied = ranking.matches(r#"<tr class="rank-tied""#).count();
    assert_eq!(worse + tied, groups - 1);
    // Model 1 is 0.15 better in cosine everywhere: some cell of model 0 is significantly worse.
    assert!(worse > 0, "no cell marked significantly worse");
    assert_eq!(ranking.matches(r#"<svg class="diff""#).count(), groups - 1);

    // The trade-off front opens the report: every cell a point linking to its ranking row, the
    // front cells outlined and listed, the sentence computed from the data.
    let front_at = dom.find(r#"<section id="front""#).expect("front section");
    assert!(front_at < dom.find(r#"<section id="headline""#).unwrap());
    let svg = svg_section(&dom, "front-chart");
    assert_eq!(svg.matches(r##"<a href="#rank-"##).count(), groups);
    let on_front = svg.matches(r#"class="pt front""#).count();
    assert!(on_front >= 1, "no front cell");
    let listed = table_section(&dom, "front-table");
    assert_eq!(listed.matches(r#"class="on-front""#).count(), on_front);
    // smollm2 (model 1) is better and faster and lighter everywhere: it alone makes the front
    assert!(
        !listed.contains(r##"class="on-front"><td><a href="#rank-qwen"##),
        "a dominated model on the front"
    );
    assert!(
        dom.contains(r#"<p class="trade-off">smollm2-135m"#),
        "trade-off sentence"
    );

    // The failed cell is listed with its cause above everything else.
    assert!(
        dom.contains("Failed cells (1)") && dom.contains("worker exited early (exit status: 1)"),
        "failed cells section"
    );

    // Judge verdicts that could not be made are counted per cell, never dropped silently.
    assert!(
        dom.contains("Judge verdicts missing") && dom.contains("cut at max_tokens 1024"),
        "judge section"
    );

    // Chunk appendix: one block per (chunk size, id) used, every in-page link resolves.
    let used: BTreeSet<(usize, u32)> = answers
        .iter()
        .flat_map(|a| {
            a.chunk_ids
                .iter()
                .map(move |&id| (a.cell.retrieval.chunk_size, id))
        })
        .collect();
    assert_eq!(
        dom.matches(r#"<div class="chunk" id="chunk-"#).count(),
        used.len()
    );
    let (links, ids) = links_and_ids(&dom);
    let chunk_links = links.iter().filter(|l| l.starts_with("chunk-")).count();
    assert_eq!(
        chunk_links,
        used.len(),
        "one distinct link target per used chunk"
    );
    let dangling: Vec<&&str> = links.iter().filter(|l| !ids.contains(**l)).collect();
    assert!(dangling.is_empty(), "links without a target: {dangling:?}");
    // Escaped in the file; the DOM serializer writes text-node quotes back literally.
    assert!(html.contains("&lt;Director&gt; { Name = &quot;bacula-dir&quot; }"));
    assert!(dom.contains(r#"&lt;Director&gt; { Name = "bacula-dir" }"#));

    // Nothing but the scrolling table boxes is wider than a 1000 px window: a long label (a
    // facet title, a wide table) must not push the page sideways.
    let probe = dir.path().join("probe.html");
    std::fs::write(&probe, html.replace("</body>", OVERFLOW_PROBE)).unwrap();
    let (dom_w, w_err) = run_chromium(
        &dir.path().join("profile-width"),
        &["--dump-dom".into(), "--window-size=1000,900".into()],
        &probe,
    );
    let marker = r#"data-overflow=""#;
    let at = dom_w.find(marker).expect("overflow probe ran") + marker.len();
    let overflow = &dom_w[at..at + dom_w[at..].find('"').unwrap()];
    assert!(overflow.is_empty(), "wider than the window: {overflow}");

    // Following a chunk link opens the collapsed appendix (inline script) at that block.
    // chunk set 1 is the 500-character chunking (CHUNKS order)
    let target = format!("chunk-1-{}", 7);
    let (dom_at, at_err) = run_chromium(
        &dir.path().join("profile-anchor"),
        &["--dump-dom".into()],
        &PathBuf::from(format!("{}#{target}", page.display())),
    );
    assert!(dom_at.contains(&format!(r#"id="{target}""#)));
    let appendix = &dom_at[dom_at.find(r#"<details id="chunk-appendix""#).unwrap()..];
    let open_tag = &appendix[..appendix.find('>').unwrap()];
    assert!(open_tag.contains("open"), "appendix not opened: {open_tag}");

    for (what, log) in [
        ("screenshot", &shot_err),
        ("dump-dom", &dom_err),
        ("anchor", &at_err),
        ("width probe", &w_err),
    ] {
        let errors = console_errors(log);
        assert!(
            errors.is_empty(),
            "console errors during {what}:\n{}",
            errors.join("\n")
        );
    }
}

#[test]
fn console_error_detection_works() {
    // Lines as Chromium 156 writes them for `console.error("boom"); undefinedFn();`.
    let log = concat!(
        "[17203:17235:1121/103306.355077:ERROR:dbus/bus.cc:405] Failed to connect to the bus\n",
        "[17203:17203:1121/103307.309517:INFO:CONSOLE:1] \"boom\", source: file:///tmp/e.html (1)\n",
        "[17203:17203:1121/103307.311191:INFO:CONSOLE:1] \"Uncaught ReferenceError: undefinedFn is not defined\", source: file:///tmp/e.html (1)\n",
    );
    assert_eq!(console_errors(log).len(), 2);
    assert!(console_errors("[1:1:1121/1:ERROR:dbus/bus.cc:405] no bus").is_empty());
}
