// The demo page: read the form, POST one event to /predictions/<model> on this page's own
// server (serving/demo_page.py forwards it to TorchServe), show the answer or the error.
// Everything the server returns is written with textContent, never parsed as HTML.
"use strict";

const $ = (id) => document.getElementById(id);
const percent = (x) => `${(100 * x).toFixed(1)}%`;

function showError(message) {
  $("result").hidden = true;
  $("error").textContent = message;
  $("error").hidden = false;
}

function explain(status, body) {
  let answer = null;
  try { answer = JSON.parse(body); } catch (e) { /* not JSON: use the text */ }
  const message = (answer && answer.message) || body || `HTTP ${status}`;
  if (answer && answer.type === "InvalidKeyException") {
    return "The inference key was refused (wrong or expired). Get the current one with: scripts/manage.sh key inference";
  }
  if (status === 404) return `Model not found: ${message}. Is it registered? (scripts/manage.sh list)`;
  return `${status}: ${message}`;
}

function showAnswer(answer) {
  $("error").hidden = true;
  $("abstain").hidden = !answer.abstain;
  $("scope-score").textContent = "scope_score" in answer
    ? `scope score ${answer.scope_score.toFixed(3)}, below the model's threshold` : "its path score is below the model's threshold";
  $("path").textContent = (answer.abstain ? "Best guess: " : "") + answer.path.join(" › ");
  $("path-score").textContent = percent(answer.path_score);
  for (const level of ["taxonomy", "subtaxonomy"]) {
    $(level).textContent = answer[level].label;
    $(`${level}-meter`).value = answer[level].score;
    $(`${level}-score`).textContent = percent(answer[level].score);
  }
  const rows = $("alternatives").tBodies[0];
  rows.replaceChildren();
  answer.top_k.forEach((alt, i) => {
    const row = rows.insertRow();
    for (const value of [String(i + 1), alt.taxonomy, alt.subtaxonomy, percent(alt.score)]) {
      row.insertCell().textContent = value;
    }
  });
  $("result").hidden = false;
}

async function predict(event) {
  event.preventDefault();
  const model = $("model").value.trim();
  const key = $("key").value.trim();
  if (!model) return showError("Give the model name (as registered, e.g. events).");
  if (!key) return showError("Give the inference key: scripts/manage.sh key inference prints it.");
  const body = { title: $("title").value, description: $("description").value, top_k: Number($("top_k").value) };
  $("predict").disabled = true;
  $("status").textContent = "Predicting…";
  try {
    const response = await fetch(`predictions/${encodeURIComponent(model)}`, {
      method: "POST",
      headers: { "Content-Type": "application/json", "Authorization": `Bearer ${key}` },
      body: JSON.stringify(body),
    });
    const text = await response.text();
    if (!response.ok) return showError(explain(response.status, text));
    showAnswer(JSON.parse(text));
  } catch (e) {
    showError(`No answer from the page server (${e.message}). Is scripts/serve.sh page still running?`);
  } finally {
    $("predict").disabled = false;
    $("status").textContent = "";
  }
}

$("form").addEventListener("submit", predict);
