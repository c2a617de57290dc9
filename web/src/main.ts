/**
 * The fabrouter web app: sign-in with a token, then the designer's, operator's and admin's pages
 * (by role), all over the API that fabd serves beside this page. Where the person is (the open
 * design, the watched job, the page) is kept in the tab's sessionStorage, so a reload or a
 * dropped connection never loses it.
 */
import "./style.css";
import { admin, designs, estimates, jobs, nodes, sentence, setToken, token, transient } from "./api";
import { h, duration, mm, money, when } from "./dom";
import { Role, type TokenInfo } from "./gen/fabrouter/v1/admin_pb";
import { type Design, DesignFormat, Severity, Verdict, type MeshReport } from "./gen/fabrouter/v1/designs_pb";
import { type Job, JobEventKind, JobState, type Quote } from "./gen/fabrouter/v1/jobs_pb";
import { type Printer, PrinterState } from "./gen/fabrouter/v1/network_pb";
import { Technology } from "./gen/fabrouter/v1/common_pb";
import { findings, parseStl, type StlMesh } from "./stl";
import { upload } from "./upload";
import type { ModelView } from "./view3d";

const app = document.getElementById("app")!;
const place = {
  get(k: string): string | null {
    return sessionStorage.getItem(`fabrouter.${k}`);
  },
  set(k: string, v: string | null): void {
    if (v) sessionStorage.setItem(`fabrouter.${k}`, v);
    else sessionStorage.removeItem(`fabrouter.${k}`);
  },
};

let role: Role = Role.UNSPECIFIED;
let principal = "";
/** Timers and streams of the page on screen, stopped when another page is shown. */
let cleanups: (() => void)[] = [];

function alertBox(): HTMLElement {
  return h("div", { class: "alert", role: "alert", "aria-live": "assertive" });
}

function showError(box: HTMLElement, e: unknown): void {
  box.textContent = sentence(e);
  box.hidden = false;
}

function clear(box: HTMLElement): void {
  box.textContent = "";
  box.hidden = true;
}

const ROLE_WORDS: Record<number, string> = {
  [Role.DESIGNER]: "designer",
  [Role.OPERATOR]: "operator",
  [Role.MARKETPLACE]: "marketplace",
  [Role.ADMIN]: "admin",
  [Role.NODE]: "node",
};

const JOB_WORDS: Record<number, string> = {
  [JobState.QUEUED]: "queued",
  [JobState.ASSIGNED]: "assigned",
  [JobState.PREPARING]: "preparing",
  [JobState.PRINTING]: "printing",
  [JobState.PAUSED]: "paused",
  [JobState.COMPLETED]: "completed",
  [JobState.FAILED]: "failed",
  [JobState.CANCELLED]: "cancelled",
};

const PRINTER_WORDS: Record<number, string> = {
  [PrinterState.IDLE]: "idle",
  [PrinterState.PRINTING]: "printing",
  [PrinterState.PAUSED]: "paused",
  [PrinterState.OFFLINE]: "offline",
  [PrinterState.MAINTENANCE]: "maintenance",
};

const ENDED = new Set([JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED]);

// ---------------------------------------------------------------- sign-in and frame

function signIn(message?: string): void {
  const err = alertBox();
  const input = h("input", {
    id: "token",
    type: "password",
    autocomplete: "off",
    required: true,
    "aria-describedby": "token-help",
  });
  const form = h(
    "form",
    { class: "card signin", "aria-labelledby": "signin-h" },
    h("h1", { id: "signin-h" }, "Sign in to fabrouter"),
    h("label", { for: "token" }, "API token"),
    input,
    h(
      "p",
      { id: "token-help", class: "help" },
      "Ask your router's admin for a token. It is kept for this browser tab only.",
    ),
    h("button", { type: "submit" }, "Sign in"),
    err,
  );
  if (message) showError(err, message);
  else clear(err);
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    setToken(input.value.trim());
    try {
      await frame();
    } catch (e) {
      setToken(null);
      showError(err, e);
    }
  });
  app.replaceChildren(h("main", { id: "main" }, form));
  input.focus();
}

async function frame(): Promise<void> {
  const me = await admin.whoAmI({});
  role = me.role;
  principal = me.principal;
  const pages: [string, string][] = [];
  if ([Role.DESIGNER, Role.MARKETPLACE, Role.ADMIN].includes(role)) pages.push(["designer", "Designs and jobs"]);
  if ([Role.OPERATOR, Role.ADMIN].includes(role)) pages.push(["operator", "Printers"]);
  if (role === Role.ADMIN) pages.push(["admin", "Admin"]);
  if (!pages.length) {
    setToken(null);
    signIn("This token's role has no pages here (nodes use the node protocol).");
    return;
  }
  const nav = h(
    "nav",
    { "aria-label": "Pages" },
    pages.map(([id, label]) => h("a", { href: `#${id}`, id: `nav-${id}` }, label)),
  );
  const main = h("main", { id: "main", tabindex: "-1" });
  const out = h(
    "button",
    {
      type: "button",
      class: "link",
      onclick: () => {
        setToken(null);
        sessionStorage.clear();
        stopPage();
        signIn();
      },
    },
    "Sign out",
  );
  app.replaceChildren(
    h("a", { class: "skip", href: "#main" }, "Skip to content"),
    h(
      "header",
      {},
      h("span", { class: "brand" }, "fabrouter"),
      nav,
      h("span", { class: "who" }, `${ROLE_WORDS[role] ?? "?"} · ${principal.replace("principals/", "")}`),
      out,
    ),
    main,
  );
  const show = () => {
    const want = location.hash.slice(1);
    const id = pages.find(([p]) => p === want)?.[0] ?? pages[0][0];
    for (const [p] of pages) {
      const a = document.getElementById(`nav-${p}`)!;
      if (p === id) a.setAttribute("aria-current", "page");
      else a.removeAttribute("aria-current");
    }
    stopPage();
    if (id === "designer") designerPage(main);
    else if (id === "operator") operatorPage(main);
    else adminPage(main);
  };
  window.onhashchange = show;
  show();
}

function stopPage(): void {
  for (const c of cleanups) c();
  cleanups = [];
}

// ---------------------------------------------------------------- designer

interface Current {
  design: Design;
  mesh: StlMesh | null;
}

function designerPage(main: HTMLElement): void {
  let current: Current | null = null;
  let view: ModelView | null = null;
  let printers: Printer[] = [];

  // Upload
  const upErr = alertBox();
  clear(upErr);
  const fileInput = h("input", { id: "file", type: "file", accept: ".stl,.gcode,.gco,.g" });
  const progress = h("progress", { id: "upload-progress", max: 1, value: 0, "aria-label": "Upload progress" });
  const upStatus = h("p", { id: "upload-status", role: "status", "aria-live": "polite" });
  const drop = h(
    "div",
    { class: "drop", id: "drop" },
    h("p", {}, "Drop an STL or G-code file here, or "),
    h("label", { for: "file", class: "button" }, "choose a file"),
    fileInput,
  );
  const uploadSection = h(
    "section",
    { class: "card", "aria-labelledby": "up-h" },
    h("h2", { id: "up-h" }, "Upload a design"),
    drop,
    progress,
    upStatus,
    upErr,
  );
  progress.hidden = true;

  async function send(file: File): Promise<void> {
    clear(upErr);
    progress.hidden = false;
    progress.value = 0;
    upStatus.textContent = `Uploading ${file.name}…`;
    try {
      const design = await upload(file, (p) => {
        progress.value = p.total ? p.sent / p.total : 0;
        upStatus.textContent = p.retrying
          ? p.retrying
          : p.sent < p.total
            ? `Uploading ${file.name}: ${Math.round((100 * p.sent) / p.total)} %`
            : `Checking ${file.name}…`;
      });
      upStatus.textContent = `${file.name} uploaded and checked.`;
      const bytes = design.format === DesignFormat.STL ? parseStl(await file.arrayBuffer()) : null;
      await open(design, bytes);
      void listDesigns();
    } catch (e) {
      upStatus.textContent = "";
      progress.hidden = true;
      showError(upErr, e);
    }
  }
  fileInput.addEventListener("change", () => {
    const f = fileInput.files?.[0];
    if (f) void send(f);
    fileInput.value = "";
  });
  drop.addEventListener("dragover", (e) => {
    e.preventDefault();
    drop.classList.add("over");
  });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    const f = e.dataTransfer?.files?.[0];
    if (f) void send(f);
  });

  // The open design: report, 3D view, estimates, quote
  const designSection = h("section", { class: "card", id: "design", "aria-labelledby": "design-h" });
  designSection.hidden = true;

  // Jobs
  const jobsErr = alertBox();
  clear(jobsErr);
  const jobsBody = h("tbody", {});
  const jobsSection = h(
    "section",
    { class: "card", "aria-labelledby": "jobs-h" },
    h("h2", { id: "jobs-h" }, "Your jobs"),
    h(
      "div",
      { class: "scroll" },
      h(
        "table",
        { id: "jobs" },
        h("thead", {}, h("tr", {}, ["Job", "State", "Progress", "Printer", ""].map((t) => h("th", { scope: "col" }, t)))),
        jobsBody,
      ),
    ),
    jobsErr,
  );
  const watchSection = h("section", { class: "card", id: "watch", "aria-labelledby": "watch-h" });
  watchSection.hidden = true;

  // Designs
  const designsList = h("ul", { id: "designs", class: "plain" });
  const designsErr = alertBox();
  clear(designsErr);
  const designsSection = h(
    "section",
    { class: "card", "aria-labelledby": "designs-h" },
    h("h2", { id: "designs-h" }, "Your designs"),
    designsList,
    designsErr,
  );

  main.replaceChildren(
    h("div", { class: "cols" }, h("div", {}, uploadSection, designSection), h("div", {}, watchSection, jobsSection, designsSection)),
  );

  async function listDesigns(): Promise<void> {
    try {
      const r = await designs.listDesigns({ pageSize: 50 });
      designsList.replaceChildren(
        ...r.designs.map((d) =>
          h(
            "li",
            {},
            h("button", { type: "button", class: "link", onclick: () => void openByName(d.name) }, d.fileName),
            h("span", { class: "muted" }, ` ${verdictWord(d)} · ${when(d.createTime)}`),
          ),
        ),
      );
      if (!r.designs.length) designsList.replaceChildren(h("li", { class: "muted" }, "No designs yet."));
      clear(designsErr);
    } catch (e) {
      showError(designsErr, e);
    }
  }

  async function openByName(name: string): Promise<void> {
    try {
      const d = await designs.getDesign({ name });
      let mesh: StlMesh | null = null;
      if (d.format !== DesignFormat.GCODE) {
        const parts: Uint8Array[] = [];
        for await (const m of designs.downloadDesign({ name })) parts.push(m.chunk);
        const all = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
        let o = 0;
        for (const p of parts) {
          all.set(p, o);
          o += p.length;
        }
        mesh = parseStl(all.buffer);
      }
      await open(d, mesh);
    } catch (e) {
      place.set("design", null);
      showError(designsErr, e);
    }
  }

  async function open(design: Design, mesh: StlMesh | null): Promise<void> {
    current = { design, mesh };
    place.set("design", design.name);
    if (!printers.length) {
      try {
        printers = (await nodes.listPrinters({ pageSize: 1000 })).printers;
      } catch {
        printers = [];
      }
    }
    renderDesign();
  }

  function renderDesign(): void {
    if (!current) return;
    const { design, mesh } = current;
    view?.dispose();
    view = null;
    const err = alertBox();
    clear(err);
    const report = design.meshReport;
    const canvas = h("canvas", {
      id: "view3d",
      role: "img",
      "aria-label": `3D view of ${design.fileName} on the printer's bed; findings highlighted`,
    });
    const bedSelect = h(
      "select",
      { id: "bed" },
      h("option", { value: "" }, "No printer: part alone"),
      printers.map((p) =>
        h("option", { value: p.name }, `${p.spec?.makerspace ?? ""} · ${p.spec?.printerId ?? p.name} (${p.spec?.buildXMm}×${p.spec?.buildYMm}×${p.spec?.buildZMm} mm)`),
      ),
    );
    const legend = h(
      "ul",
      { class: "legend plain", "aria-label": "Colours in the 3D view" },
      h("li", {}, h("span", { class: "swatch open" }), "open edge"),
      h("li", {}, h("span", { class: "swatch nm" }), "non-manifold edge"),
      h("li", {}, h("span", { class: "swatch flip" }), "flipped facet"),
      h("li", {}, h("span", { class: "swatch degen" }), "degenerate facet"),
    );
    const found = mesh ? findings(mesh) : null;
    let framed: "part" | "bed" = "part";
    const frameButton = h("button", { type: "button", class: "link", id: "frame" }, "View the whole bed");
    frameButton.addEventListener("click", () => {
      framed = framed === "part" ? "bed" : "part";
      frameButton.textContent = framed === "part" ? "View the whole bed" : "View the part up close";
      view?.frame(framed);
    });
    const drawn = h("p", { class: "muted", id: "drawn" });
    if (found) {
      drawn.textContent = `Drawn: ${found.openEdges.length / 6} open edges, ${found.nonManifoldEdges.length / 6} non-manifold edges, ${found.flipped.length} flipped and ${found.degenerate.length} degenerate facets.`;
    }
    const estBody = h("tbody", {});
    const estimateButton = h("button", { type: "button", id: "estimate" }, "Estimate on every profile");
    estimateButton.addEventListener("click", () => void estimateAll(estBody, err));
    const quoteOut = h("div", { id: "quote" });
    const quoteForm = quoteFormFor(design, quoteOut, err);
    const del = h("button", { type: "button", class: "danger", id: "delete-design" }, "Delete design");
    del.addEventListener("click", async () => {
      if (!confirm(`Delete ${design.fileName}? Jobs already made from it are not affected.`)) return;
      try {
        await designs.deleteDesign({ name: design.name });
        current = null;
        place.set("design", null);
        view?.dispose();
        view = null;
        designSection.hidden = true;
        void listDesigns();
      } catch (e) {
        showError(err, e);
      }
    });
    designSection.replaceChildren(
      ...[
      h("h2", { id: "design-h", tabindex: "-1" }, design.fileName),
      h("p", { class: "muted" }, `${design.name} · ${(Number(design.sizeBytes) / 1024).toFixed(1)} KiB · ${when(design.createTime)}`),
      report ? meshReport(report) : gcodeReport(design),
      mesh
        ? h(
            "div",
            { class: "viewer" },
            h("label", { for: "bed" }, "Show on the bed of "),
            bedSelect,
            " ",
            frameButton,
            canvas,
            legend,
            drawn,
          )
        : null,
      h(
        "details",
        { class: "estimates" },
        h("summary", {}, "Estimates per printer profile"),
        estimateButton,
        h(
          "div",
          { class: "scroll" },
          h(
            "table",
            {},
            h("thead", {}, h("tr", {}, ["Profile", "Time", "Filament", "Layers", "Notes"].map((t) => h("th", { scope: "col" }, t)))),
            estBody,
          ),
        ),
      ),
      quoteForm,
      quoteOut,
      h("p", {}, del),
      err,
      ].filter((x): x is HTMLElement => x !== null),
    );
    designSection.hidden = false;
    if (mesh) {
      const draw = async () => {
        const { ModelView } = await import("./view3d");
        if (!view) view = new ModelView(canvas);
        const p = printers.find((x) => x.name === bedSelect.value);
        const bed = p?.spec
          ? { x: p.spec.buildXMm, y: p.spec.buildYMm, z: p.spec.buildZMm, label: p.name }
          : null;
        view.show(mesh, found, bed);
        if (framed === "bed") view.frame("bed");
        canvas.dataset.drawn = String(mesh.facets);
      };
      bedSelect.addEventListener("change", () => void draw());
      if (printers.length) bedSelect.value = printers[0].name;
      void draw().catch((e) => showError(err, e));
    }
    document.getElementById("design-h")?.focus();

    async function estimateAll(body: HTMLElement, box: HTMLElement): Promise<void> {
      body.replaceChildren(h("tr", {}, h("td", { colspan: 5 }, "Estimating…")));
      try {
        const profiles = (await estimates.listProfiles({})).profiles;
        const rows: HTMLElement[] = [];
        for (const p of profiles) {
          try {
            const e = await estimates.estimateDesign({ design: design.name, profile: p.name });
            rows.push(
              h("tr", {}, h("th", { scope: "row" }, p.name), h("td", {}, duration(e.printTimeS)), h("td", {}, `${e.filamentG.toFixed(1)} g`), h("td", {}, e.layers), h("td", {}, e.warnings.join("; "))),
            );
          } catch (e) {
            rows.push(h("tr", {}, h("th", { scope: "row" }, p.name), h("td", { colspan: 4 }, sentence(e))));
          }
          body.replaceChildren(...rows);
        }
      } catch (e) {
        body.replaceChildren();
        showError(box, e);
      }
    }
  }

  function quoteFormFor(design: Design, out: HTMLElement, box: HTMLElement): HTMLElement {
    const f = (id: string, label: string, attrs: Record<string, string>) =>
      h("div", { class: "field" }, h("label", { for: id }, label), h("input", { id, ...attrs }));
    const loc = place.get("location")?.split(",") ?? ["52.52", "13.405"];
    const form = h(
      "form",
      { class: "quote-form", "aria-labelledby": "quote-h" },
      h("h3", { id: "quote-h" }, "Quote and order"),
      h(
        "div",
        { class: "grid" },
        f("q-material", "Material", { value: "PLA", autocomplete: "off" }),
        f("q-colour", "Colour (empty: any)", { value: "", autocomplete: "off" }),
        f("q-qty", "Quantity", { type: "number", min: "1", max: "100", value: "1" }),
        f("q-lat", "Your latitude", { type: "number", step: "any", value: loc[0] }),
        f("q-lon", "Your longitude", { type: "number", step: "any", value: loc[1] }),
        f("q-dist", "Max distance, km (0: any)", { type: "number", min: "0", value: "0" }),
      ),
      h("button", { type: "submit", id: "get-quote" }, "Get a quote"),
    );
    const val = (id: string) => (form.querySelector(`#${id}`) as HTMLInputElement).value;
    const spec = () => ({
      design: design.name,
      technology: Technology.FDM,
      material: { kind: val("q-material").trim(), colour: val("q-colour").trim() },
      customerLocation: { latDeg: Number(val("q-lat")), lonDeg: Number(val("q-lon")) },
      maxDistanceKm: Number(val("q-dist")) || 0,
      quantity: Math.max(1, Number(val("q-qty")) || 1),
    });
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      clear(box);
      place.set("location", `${val("q-lat")},${val("q-lon")}`);
      out.replaceChildren(h("p", { role: "status" }, "Asking the router…"));
      try {
        const q = await jobs.quoteJob({ spec: spec(), maxOptions: 5 });
        out.replaceChildren(quoteView(q, async (printer) => {
          clear(box);
          try {
            const r = await jobs.submitJob({ spec: spec(), printer, idempotencyKey: crypto.randomUUID?.() ?? `${Date.now()}-${Math.random()}` });
            out.replaceChildren(h("p", { role: "status", id: "ordered" }, `Ordered: ${r.jobs.map((j) => j.name).join(", ")}.`));
            await refreshJobs();
            if (r.jobs[0]) watch(r.jobs[0].name);
          } catch (e) {
            showError(box, e);
          }
        }));
      } catch (e) {
        out.replaceChildren();
        showError(box, e);
      }
    });
    return form;
  }

  function quoteView(q: Quote, order: (printer: string) => void): HTMLElement {
    const why = () => {
      if (q.printersRegistered === 0) return "No printer is registered with this router.";
      if (q.printersOnline === 0) return "No printer takes jobs right now (all offline or in maintenance).";
      return `Every printer was rejected (${q.printersRejected} of ${q.printersRegistered}).`;
    };
    return h(
      "div",
      {},
      q.options.length
        ? h(
            "ol",
            { class: "options plain", id: "options" },
            q.options.map((o, i) =>
              h(
                "li",
                { class: "option" },
                h("h4", {}, `${i + 1}. ${o.makerspace} · ${o.printer.split("/").pop()}`),
                h(
                  "dl",
                  { class: "facts" },
                  h("dt", {}, "Price"), h("dd", {}, o.price ? money(o.price.currency, o.price.amountMinor) : "—"),
                  h("dt", {}, "Print time"), h("dd", {}, duration(o.estimate?.printTimeS ?? 0)),
                  h("dt", {}, "Ready in"), h("dd", {}, duration(o.etaS)),
                  h("dt", {}, "Material"), h("dd", {}, `${(o.estimate?.filamentG ?? 0).toFixed(1)} g`),
                  h("dt", {}, "Distance"), h("dd", {}, `${o.distanceKm.toFixed(1)} km`),
                  h("dt", {}, "Orientation"), h("dd", {}, o.orientation || "as uploaded"),
                ),
                h("ul", { class: "reasons" }, o.reasons.map((r) => h("li", {}, r))),
                h("button", { type: "button", class: "order", onclick: () => order(o.printer) }, `Order from ${o.makerspace}`),
              ),
            ),
          )
        : h("p", { class: "warn" }, `No printer can take this job. ${why()}`),
      q.rejections.length
        ? h(
            "details",
            { id: "rejections", open: !q.options.length },
            h("summary", {}, `Printers that cannot (${q.printersRejected})`),
            h("ul", {}, q.rejections.map((r) => h("li", {}, h("strong", {}, r.printer.split("/").slice(1).join(" ").replace("printers ", "· ")), `: ${r.message}`))),
          )
        : null,
    );
  }

  // Jobs and watching one
  async function refreshJobs(): Promise<void> {
    try {
      const r = await jobs.listJobs({ pageSize: 50 });
      jobsBody.replaceChildren(
        ...r.jobs.map((j) =>
          h(
            "tr",
            { "data-job": j.name },
            h("th", { scope: "row" }, j.name.replace("jobs/", "").slice(-8)),
            h("td", {}, h("span", { class: `state s-${JOB_WORDS[j.state]}` }, JOB_WORDS[j.state] ?? "?")),
            h("td", {}, `${Math.round(j.progressFraction * 100)} %`),
            h("td", {}, j.printer ? j.printer.split("/").pop() : "—"),
            h("td", {}, h("button", { type: "button", class: "link", onclick: () => watch(j.name), "aria-label": `Watch job ${j.name}` }, "Watch")),
          ),
        ),
      );
      if (!r.jobs.length) jobsBody.replaceChildren(h("tr", {}, h("td", { colspan: 5, class: "muted" }, "No jobs yet.")));
      clear(jobsErr);
    } catch (e) {
      showError(jobsErr, e);
    }
  }

  let stopWatch: (() => void) | null = null;
  function watch(name: string): void {
    stopWatch?.();
    place.set("job", name);
    const ctl = new AbortController();
    stopWatch = () => ctl.abort();
    cleanups.push(() => ctl.abort());
    const err = alertBox();
    clear(err);
    const state = h("span", { id: "watch-state", class: "state" }, "…");
    const bar = h("progress", { id: "watch-progress", max: 1, value: 0, "aria-label": "Print progress" });
    const facts = h("p", { id: "watch-facts", class: "muted" });
    const log = h("ol", { id: "events", class: "events", "aria-live": "polite" });
    const buttons = h("div", { class: "row" });
    const act = (label: string, id: string, fn: () => Promise<Job>) =>
      h("button", {
        type: "button", id, onclick: async () => {
          clear(err);
          try {
            show(await fn());
            void refreshJobs();
          } catch (e) {
            showError(err, e);
          }
        },
      }, label);
    buttons.append(
      act("Pause", "pause", () => jobs.pauseJob({ name })),
      act("Resume", "resume", () => jobs.resumeJob({ name })),
      act("Cancel job", "cancel", () => {
        if (!confirm("Cancel this job?")) return Promise.reject(new Error("Not cancelled."));
        return jobs.cancelJob({ name, reason: "cancelled in the web app" });
      }),
    );
    (buttons.lastChild as HTMLElement).classList.add("danger");
    watchSection.replaceChildren(
      h("h2", { id: "watch-h" }, `Job ${name.replace("jobs/", "").slice(-8)}`),
      h("p", {}, "State: ", state),
      bar,
      facts,
      buttons,
      err,
      h("h3", {}, "Events"),
      log,
    );
    watchSection.hidden = false;
    const show = (j: { state: JobState; progressFraction: number }) => {
      state.textContent = JOB_WORDS[j.state] ?? "?";
      state.className = `state s-${JOB_WORDS[j.state]}`;
      bar.value = j.progressFraction;
      const ended = ENDED.has(j.state);
      (buttons.querySelector("#pause") as HTMLButtonElement).disabled = j.state !== JobState.PRINTING;
      (buttons.querySelector("#resume") as HTMLButtonElement).disabled = j.state !== JobState.PAUSED;
      (buttons.querySelector("#cancel") as HTMLButtonElement).disabled = ended;
    };
    let next = 0n;
    const run = async () => {
      for (let attempt = 0; !ctl.signal.aborted; attempt++) {
        try {
          for await (const ev of jobs.watchJob({ name, fromSequence: next }, { signal: ctl.signal })) {
            attempt = 0;
            next = ev.sequence + 1n;
            show(ev);
            const parts = [
              ev.layer ? `layer ${ev.layer}` : "",
              ev.remainingS > 0 ? `${duration(ev.remainingS)} left` : "",
              ev.printer ? `on ${ev.printer.split("/").slice(1).join(" ").replace("printers ", "· ")}` : "",
            ].filter(Boolean);
            if (ev.kind !== JobEventKind.PROGRESS || parts.length) facts.textContent = parts.join(" · ");
            if (ev.kind !== JobEventKind.PROGRESS || log.childElementCount === 0) {
              const what = JobEventKind[ev.kind]?.toLowerCase().replace("_", " ") ?? "event";
              log.prepend(
                h("li", { class: ev.kind === JobEventKind.REROUTED ? "reroute" : "" }, h("time", {}, when(ev.time)), ` ${what}${ev.message ? `: ${ev.message}` : ""}`),
              );
            }
            if (ENDED.has(ev.state)) {
              void refreshJobs();
              return;
            }
          }
          return;
        } catch (e) {
          if (ctl.signal.aborted) return;
          if (!transient(e) || attempt > 20) {
            showError(err, e);
            return;
          }
          facts.textContent = "Connection lost; reconnecting…";
          await new Promise((r) => setTimeout(r, Math.min(1000 * 2 ** attempt, 10000)));
        }
      }
    };
    void run();
  }

  void listDesigns();
  void refreshJobs();
  const poll = setInterval(() => void refreshJobs(), 5000);
  cleanups.push(() => clearInterval(poll), () => view?.dispose());
  const d = place.get("design");
  if (d) void openByName(d);
  const j = place.get("job");
  if (j) watch(j);
}

function verdictWord(d: Design): string {
  if (d.format === DesignFormat.GCODE) return "G-code";
  switch (d.meshReport?.verdict) {
    case Verdict.PRINTABLE: return "printable";
    case Verdict.PRINTABLE_WITH_WARNINGS: return "printable with warnings";
    case Verdict.NOT_PRINTABLE: return "not printable";
    default: return "unchecked";
  }
}

function meshReport(r: MeshReport): HTMLElement {
  const ext = r.extentMm;
  const verdict = r.verdict === Verdict.PRINTABLE ? "ok" : r.verdict === Verdict.NOT_PRINTABLE ? "bad" : "warn";
  const row = (k: string, v: string | number | bigint, bad = false) => [h("dt", {}, k), h("dd", { class: bad ? "bad" : "" }, String(v))];
  return h(
    "div",
    { class: "report", id: "report" },
    h("p", { class: `verdict ${verdict}`, id: "verdict" }, `Verdict: ${verdictWord({ format: DesignFormat.STL, meshReport: r } as Design)}`),
    h(
      "dl",
      { class: "facts" },
      row("Size", ext ? `${mm(ext.x)} × ${mm(ext.y)} × ${mm(ext.z)}` : "—"),
      row("Volume", `${(r.volumeMm3 / 1000).toFixed(2)} cm³`),
      row("Facets", r.triangles),
      row("Shells", `${r.shells} (${r.closedShells} closed)`),
      row("Open edges", `${r.openEdges} in ${r.holeLoops} holes`, r.openEdges > 0n),
      row("Non-manifold edges", r.nonManifoldEdges, r.nonManifoldEdges > 0n),
      row("Degenerate facets", r.degenerateFacets, r.degenerateFacets > 0n),
      row("Flipped normals", r.flippedNormals, r.flippedNormals > 0n),
      row("Likely unit", r.likelyUnitReason || "mm"),
    ),
    r.findings.length
      ? h(
          "ul",
          { class: "findings", id: "findings" },
          r.findings.map((f) => h("li", { class: `sev-${Severity[f.severity]?.toLowerCase()}` }, h("strong", {}, `${Severity[f.severity]?.toLowerCase()}: `), f.message)),
        )
      : null,
  );
}

function gcodeReport(d: Design): HTMLElement {
  const g = d.gcodeReport;
  if (!g) return h("p", {}, "No report.");
  return h(
    "div",
    { class: "report", id: "report" },
    h("p", { class: "verdict ok" }, "Pre-sliced G-code"),
    h(
      "dl",
      { class: "facts" },
      h("dt", {}, "Generator"), h("dd", {}, g.generator || "—"),
      h("dt", {}, "Layers"), h("dd", {}, String(g.layers)),
      h("dt", {}, "Slicer's time"), h("dd", {}, duration(g.slicerTimeS)),
      h("dt", {}, "Filament"), h("dd", {}, `${g.slicerFilamentG.toFixed(1)} g`),
      h("dt", {}, "Nozzle"), h("dd", {}, `${g.nozzleMm} mm`),
    ),
    h("ul", { class: "findings" }, g.findings.map((f) => h("li", {}, f.message))),
  );
}

// ---------------------------------------------------------------- operator

function operatorPage(main: HTMLElement): void {
  const err = alertBox();
  clear(err);
  const filter = h("select", { id: "space" }, h("option", { value: "" }, "All makerspaces"));
  const body = h("div", { id: "printers", class: "printers" });
  const updated = h("p", { class: "muted", role: "status" });
  main.replaceChildren(
    h(
      "section",
      { class: "card", "aria-labelledby": "printers-h" },
      h("h2", { id: "printers-h" }, "Printers"),
      h("div", { class: "row" }, h("label", { for: "space" }, "Makerspace "), filter),
      updated,
      body,
      err,
      h(
        "p",
        { class: "help" },
        "Live from the router every 3 seconds. Temperatures, the current job of another customer and taking a printer out of service are not in the router's API yet: the node agent reports maintenance from its own configuration.",
      ),
    ),
  );
  let spaces = new Set<string>();
  const load = async () => {
    try {
      const all: Printer[] = [];
      let pageToken = "";
      do {
        const r = await nodes.listPrinters({ pageSize: 500, pageToken });
        all.push(...r.printers);
        pageToken = r.nextPageToken;
      } while (pageToken);
      const names = new Set(all.map((p) => p.spec?.makerspace ?? ""));
      if ([...names].join() !== [...spaces].join()) {
        spaces = names;
        const keep = filter.value;
        filter.replaceChildren(h("option", { value: "" }, "All makerspaces"), ...[...names].sort().map((n) => h("option", { value: n }, n)));
        filter.value = keep;
      }
      const shown = all.filter((p) => !filter.value || p.spec?.makerspace === filter.value);
      body.replaceChildren(
        ...shown.map((p) => {
          const s = p.spec;
          const word = PRINTER_WORDS[p.state] ?? "unknown";
          return h(
            "article",
            { class: "printer", "data-printer": p.name, "aria-labelledby": `p-${p.name.replace(/\W/g, "-")}` },
            h("h3", { id: `p-${p.name.replace(/\W/g, "-")}` }, `${s?.makerspace ?? ""} · ${s?.printerId ?? p.name}`),
            h("p", {}, h("span", { class: `state s-${word}` }, word)),
            h(
              "dl",
              { class: "facts" },
              h("dt", {}, "Active jobs"), h("dd", {}, String(p.activeJobs)),
              h("dt", {}, "Queued work"), h("dd", {}, duration(p.queuedWorkS)),
              h("dt", {}, "Build volume"), h("dd", {}, s ? `${s.buildXMm}×${s.buildYMm}×${s.buildZMm} mm` : "—"),
              h("dt", {}, "Materials"), h("dd", {}, s?.materials.map((m) => `${m.kind} ${m.colour}`.trim()).join(", ") || "—"),
              h("dt", {}, "Nozzles"), h("dd", {}, s?.nozzleDiametersMm.map((n) => `${n} mm`).join(", ") || "—"),
              h("dt", {}, "Last seen"), h("dd", {}, when(p.lastSeenTime)),
            ),
          );
        }),
      );
      if (!shown.length) body.replaceChildren(h("p", { class: "muted" }, "No printers registered."));
      updated.textContent = `${shown.length} printers · updated ${new Date().toLocaleTimeString()}`;
      clear(err);
    } catch (e) {
      showError(err, e);
    }
  };
  filter.addEventListener("change", () => void load());
  void load();
  const t = setInterval(() => void load(), 3000);
  cleanups.push(() => clearInterval(t));
}

// ---------------------------------------------------------------- admin

function adminPage(main: HTMLElement): void {
  const err = alertBox();
  clear(err);
  const secretBox = h("div", { id: "secret", class: "secret", role: "status", "aria-live": "polite" });
  secretBox.hidden = true;
  const showSecret = (what: string, secret: string) => {
    const code = h("code", { id: "secret-value" }, secret);
    secretBox.replaceChildren(
      h("p", {}, h("strong", {}, `${what}. `), "Copy the secret now: it is shown only once."),
      code,
      h("button", { type: "button", onclick: () => void navigator.clipboard?.writeText(secret) }, "Copy"),
    );
    secretBox.hidden = false;
  };
  const roleSel = h(
    "select",
    { id: "t-role" },
    [Role.DESIGNER, Role.OPERATOR, Role.MARKETPLACE, Role.ADMIN].map((r) => h("option", { value: r }, ROLE_WORDS[r])),
  );
  const label = h("input", { id: "t-label", maxlength: 200, required: true, autocomplete: "off" });
  const tokenForm = h(
    "form",
    { "aria-labelledby": "tok-new-h" },
    h("h3", { id: "tok-new-h" }, "New token"),
    h("div", { class: "grid" }, h("div", { class: "field" }, h("label", { for: "t-role" }, "Role"), roleSel), h("div", { class: "field" }, h("label", { for: "t-label" }, "Label"), label)),
    h("button", { type: "submit", id: "create-token" }, "Create token"),
  );
  const nodeId = h("input", { id: "n-id", pattern: "[a-z0-9-]+", required: true, autocomplete: "off", "aria-describedby": "n-help" });
  const nodeLabel = h("input", { id: "n-label", autocomplete: "off" });
  const nodeErr = alertBox();
  clear(nodeErr);
  const nodeForm = h(
    "form",
    { "aria-labelledby": "node-h" },
    h("h3", { id: "node-h" }, "New node identity"),
    h("div", { class: "grid" }, h("div", { class: "field" }, h("label", { for: "n-id" }, "Node id"), nodeId), h("div", { class: "field" }, h("label", { for: "n-label" }, "Label"), nodeLabel)),
    h("p", { id: "n-help", class: "help" }, "Lowercase letters, digits and dashes, e.g. fablab-berlin. The node agent uses the secret in its configuration."),
    h("button", { type: "submit", id: "create-node" }, "Create node identity"),
    nodeErr,
  );
  const tbody = h("tbody", { id: "tokens" });
  main.replaceChildren(
    h(
      "section",
      { class: "card", "aria-labelledby": "tok-h" },
      h("h2", { id: "tok-h" }, "Tokens"),
      tokenForm,
      secretBox,
      err,
      h("div", { class: "scroll" }, h("table", {}, h("thead", {}, h("tr", {}, ["Label", "Role", "Principal", "Created", ""].map((t) => h("th", { scope: "col" }, t)))), tbody)),
    ),
    h("section", { class: "card", "aria-labelledby": "node-h" }, nodeForm),
  );
  const list = async () => {
    try {
      const r = await admin.listTokens({});
      tbody.replaceChildren(...r.tokens.map((t: TokenInfo) =>
        h(
          "tr",
          {},
          h("th", { scope: "row" }, t.label || "—"),
          h("td", {}, ROLE_WORDS[t.role] ?? "?"),
          h("td", {}, t.principal.replace("principals/", "")),
          h("td", {}, when(t.createTime)),
          h("td", {}, h("button", {
            type: "button", class: "link danger", "aria-label": `Revoke token ${t.label}`, onclick: async () => {
              if (!confirm(`Revoke the token "${t.label}"? Whoever uses it is signed out at once.`)) return;
              try {
                await admin.revokeToken({ name: t.name });
                void list();
              } catch (e) {
                showError(err, e);
              }
            },
          }, "Revoke")),
        )));
    } catch (e) {
      showError(err, e);
    }
  };
  tokenForm.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    clear(err);
    try {
      const r = await admin.createToken({ role: Number(roleSel.value) as Role, label: label.value.trim() });
      showSecret(`Token "${r.token?.label}" (${ROLE_WORDS[r.token?.role ?? 0]}) created`, r.secret);
      label.value = "";
      void list();
    } catch (e) {
      showError(err, e);
    }
  });
  nodeForm.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    clear(nodeErr);
    try {
      const r = await admin.createNode({ nodeId: nodeId.value.trim(), label: nodeLabel.value.trim() });
      showSecret(`Node identity ${r.nodeId} created`, r.secret);
      nodeId.value = "";
      nodeLabel.value = "";
    } catch (e) {
      showError(nodeErr, e);
    }
  });
  void list();
}

// ---------------------------------------------------------------- start

if (token()) {
  frame().catch((e) => {
    setToken(null);
    signIn(sentence(e));
  });
} else {
  signIn();
}
