// The playground: create a channel, publish to it, read it live, end it.
// Plain DOM and fetch; the REST base URL comes from the page (configuration),
// the channel URL from the API's answer. Every action also shows the same
// call as a curl command and as a `chantra` command, each with a copy button.
"use strict";

(() => {
  const root = document.getElementById("playground");
  const restUrl = root.dataset.restUrl.replace(/\/$/, "");
  // `chantra` talks to this REST URL unless CHANTRA_URL (or --url) says otherwise.
  const CLI_DEFAULT_URL = "http://127.0.0.1:8081";
  const $ = (id) => document.getElementById(id);
  let channel = null;
  let grantId = null;
  let events = null;

  const status = (text) => { $("status").textContent = text; };

  // --- commands to copy --------------------------------------------------------

  // One shell word: left alone when safe, else in single quotes.
  const sh = (word) => (/^[A-Za-z0-9_@%+=:,./-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`);
  const cliEnv = (vars) => {
    const all = restUrl === CLI_DEFAULT_URL ? vars : { CHANTRA_URL: restUrl, ...vars };
    return Object.entries(all).map(([k, v]) => `${k}=${sh(v)} `).join("");
  };
  const publishHeader = () => `-H ${sh(`X-Publish-Token: ${channel.publish_token}`)}`;

  // Fills the command boxes of one action: [tool, command] pairs.
  const showCommands = (action, commands) => {
    const box = root.querySelector(`.commands[data-action="${action}"]`);
    box.replaceChildren(...commands.map(([tool, text]) => {
      const row = document.createElement("div");
      row.className = "command";
      row.dataset.tool = tool;
      const label = document.createElement("span");
      label.className = "tool";
      label.textContent = tool;
      const pre = document.createElement("pre");
      const code = document.createElement("code");
      code.textContent = text;
      pre.append(code);
      const copy = document.createElement("button");
      copy.type = "button";
      copy.className = "copy";
      copy.textContent = "Copy";
      copy.setAttribute("aria-label", `Copy the ${tool} command`);
      copy.addEventListener("click", () => copyText(text, copy));
      row.append(label, pre, copy);
      return row;
    }));
  };

  const copyText = async (text, button) => {
    try {
      await navigator.clipboard.writeText(text);
    } catch {
      // No clipboard API (an insecure origin): select the text for Ctrl-C instead.
      const range = document.createRange();
      range.selectNodeContents(button.previousElementSibling);
      getSelection().removeAllRanges();
      getSelection().addRange(range);
      button.textContent = "Selected";
      return;
    }
    button.textContent = "Copied";
    setTimeout(() => { button.textContent = "Copy"; }, 1500);
  };

  const showCreateCommands = () => {
    const isPrivate = selected("visibility") === "private";
    showCommands("create", [
      ["curl", isPrivate
        ? `curl -s -X POST ${restUrl}/v1/channels -H 'content-type: application/json' -d '{"visibility":"private"}'`
        : `curl -s -X POST ${restUrl}/v1/channels`],
      ["chantra", `${cliEnv({})}chantra channel create${isPrivate ? " --private" : ""}`],
    ]);
  };

  const showPublishCommands = () => {
    if (!channel) return;
    const format = selected("format");
    const url = `${restUrl}/v1/channels/${channel.channel_id}/publish`;
    const env = cliEnv({ CHANTRA_PUBLISH_TOKEN: channel.publish_token });
    let curlBody;
    let cliBody;
    if (format === "file") {
      const file = $("file").files[0];
      const name = file ? file.name : "FILE";
      const type = (file && file.type) || "application/octet-stream";
      curlBody = `-H ${sh(`content-type: ${type}`)} --data-binary ${sh(`@${name}`)}`;
      cliBody = `${sh(`@${name}`)} --content-type ${sh(type)}`;
    } else {
      const text = $("message").value || (format === "json" ? '{"temp":21.5}' : "hello");
      const type = format === "json" ? "application/json" : "text/plain; charset=utf-8";
      curlBody = `-H ${sh(`content-type: ${type}`)} --data-binary ${sh(text)}`;
      cliBody = format === "json" ? `${sh(text)} --content-type application/json` : sh(text);
    }
    showCommands("publish", [
      ["curl", `curl -s -X POST ${url} ${publishHeader()} ${curlBody}`],
      ["chantra", `${env}chantra pub ${channel.channel_id} ${cliBody}`],
    ]);
  };

  const showChannelCommands = () => {
    const read = channel.read_token ? ` -H ${sh(`X-Read-Token: ${channel.read_token}`)}` : "";
    const readEnv = channel.read_token ? `CHANTRA_READ_TOKEN=${sh(channel.read_token)} ` : "";
    showCommands("read", [
      ["curl", `curl -N ${channel.url}${read}`],
      ["curl", `curl -s '${channel.url}?poll=1'${read}`],
      ["chantra", `${readEnv}chantra sub ${channel.url}`],
    ]);
    const env = cliEnv({ CHANTRA_PUBLISH_TOKEN: channel.publish_token });
    const base = `${restUrl}/v1/channels/${channel.channel_id}`;
    if (channel.read_token) {
      const grant = grantId || "GRANT_ID";
      showCommands("revoke", [
        ["curl", `curl -s -X POST ${base}/read-grants/${grant}/revoke ${publishHeader()}`],
        ["chantra", `${env}chantra grant revoke ${channel.channel_id} ${grant}`],
      ]);
    } else {
      showCommands("revoke", []);
    }
    showCommands("delete", [
      ["curl", `curl -s -X DELETE ${base} ${publishHeader()}`],
      ["chantra", `${env}chantra channel delete ${channel.channel_id}`],
    ]);
    showPublishCommands();
  };

  const selected = (name) => document.querySelector(`input[name=${name}]:checked`).value;

  // --- reading -----------------------------------------------------------------

  // A message's payload as text, whichever encoding the server used: "json"
  // (the document itself), "text" (a string), or "base64" — also when the
  // field is absent (a server older than the `encoding` field).
  const payloadText = (message) => {
    if (message.encoding === "json") return JSON.stringify(message.payload);
    if (message.encoding === "text") return message.payload;
    const bytes = Uint8Array.from(atob(message.payload), (c) => c.charCodeAt(0));
    try {
      return new TextDecoder("utf-8", { fatal: true }).decode(bytes);
    } catch {
      return `(${bytes.length} bytes of ${message.content_type})`;
    }
  };

  const show = (message) => {
    const item = document.createElement("li");
    item.dataset.id = message.id;
    item.dataset.encoding = message.encoding || "base64";
    item.textContent = payloadText(message);
    const time = document.createElement("time");
    time.dateTime = message.created_at;
    time.textContent = new Date(message.created_at).toLocaleTimeString();
    item.append(time);
    $("messages").append(item);
  };

  // The stream ended for good (deleted channel, revoked token): no reconnect.
  const ended = (state) => {
    $("stream-state").textContent = state;
    if (events) events.close();
    events = null;
  };

  const follow = () => {
    // EventSource cannot send headers: a private channel's read token goes in ?token=.
    const url = channel.read_token ? `${channel.url}?token=${encodeURIComponent(channel.read_token)}` : channel.url;
    events = new EventSource(url);
    events.addEventListener("open", () => { $("stream-state").textContent = "connected"; });
    events.addEventListener("message", (event) => show(JSON.parse(event.data)));
    events.addEventListener("gap", (event) => {
      const gap = JSON.parse(event.data);
      status(`Some messages expired before they were read (the oldest kept is ${gap.oldest_available_id ?? "none"}).`);
    });
    events.addEventListener("deleted", () => {
      ended("channel deleted");
      setPublishing(false);
      $("revoke").disabled = true;
      $("delete").disabled = true;
    });
    events.addEventListener("revoked", (event) => {
      let reason = "";
      try { reason = JSON.parse(event.data).reason || ""; } catch { /* no reason given */ }
      ended(`read access revoked${reason && reason !== "revoked" ? ` (${reason})` : ""}`);
      $("revoke").disabled = true;
    });
    events.addEventListener("error", () => {
      if (!events) return;
      // EventSource retries by itself, unless the server refused the stream (401, 404).
      $("stream-state").textContent =
        events.readyState === EventSource.CLOSED ? "closed (channel gone or token refused)" : "reconnecting…";
    });
  };

  // --- actions -----------------------------------------------------------------

  const call = async (method, path, init = {}) => {
    const response = await fetch(`${restUrl}${path}`, { method, ...init });
    if (response.status === 204) return null;
    const body = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error(body.error ? `${body.error.message} (${body.error.code})` : response.statusText);
    return body;
  };
  const publishToken = () => ({ "x-publish-token": channel.publish_token });

  const setPublishing = (on) => {
    for (const id of ["message", "file", "send"]) $(id).disabled = !on;
  };

  for (const input of document.querySelectorAll("input[name=visibility]")) input.addEventListener("change", showCreateCommands);
  for (const input of document.querySelectorAll("input[name=format]")) {
    input.addEventListener("change", () => {
      const file = selected("format") === "file";
      $("message-field").hidden = file;
      $("file-field").hidden = !file;
      showPublishCommands();
    });
  }
  $("message").addEventListener("input", showPublishCommands);
  $("file").addEventListener("change", showPublishCommands);

  $("create").addEventListener("click", async () => {
    const visibility = selected("visibility");
    status("Creating a channel…");
    try {
      const body = await call("POST", "/v1/channels", {
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ visibility }),
      });
      channel = body;
      grantId = body.grant_id || body.read_grant_id || null;
      if (events) events.close();
      $("messages").replaceChildren();
      $("channel-url").textContent = channel.url;
      $("publish-token").textContent = channel.publish_token;
      const isPrivate = Boolean(channel.read_token);
      $("read-token").textContent = channel.read_token || "";
      $("read-token-label").hidden = !isPrivate;
      $("read-token-value").hidden = !isPrivate;
      $("channel").hidden = false;
      $("stream-state").textContent = "connecting…";
      setPublishing(true);
      $("revoke").disabled = !isPrivate;
      $("delete").disabled = false;
      showChannelCommands();
      follow();
      status("Channel created. Publish something.");
      if (isPrivate && !grantId) findGrant().then(showChannelCommands, () => {});
    } catch (error) {
      status(`Could not create a channel: ${error.message}`);
    }
  });

  $("publish").addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!channel) return;
    const format = selected("format");
    let body;
    let type;
    if (format === "file") {
      const file = $("file").files[0];
      if (!file) return status("Choose a file first.");
      body = file;
      type = file.type || "application/octet-stream";
    } else {
      body = $("message").value;
      if (body === "") return;
      if (format === "json") {
        // The server refuses a JSON content type whose body is not JSON (400 invalid_json): say so first.
        try { JSON.parse(body); } catch (error) { return status(`Not a JSON document: ${error.message}`); }
      }
      type = format === "json" ? "application/json" : "text/plain; charset=utf-8";
      // Clear at once so typing during the request is kept; restore on failure.
      $("message").value = "";
    }
    try {
      const answer = await call("POST", `/v1/channels/${channel.channel_id}/publish`, {
        headers: { "content-type": type, ...publishToken() },
        body,
      });
      status(`Published ${answer.message_id}.`);
    } catch (error) {
      if (format !== "file" && $("message").value === "") $("message").value = body;
      status(`Could not publish: ${error.message}`);
    }
  });

  // The read token of a new private channel is its first (oldest) grant; a
  // server whose create answer does not name it lists it in the metadata.
  const findGrant = async () => {
    const owner = channel;
    const meta = await call("GET", `/v1/channels/${owner.channel_id}`, { headers: publishToken() });
    const found = meta.read_grants && meta.read_grants.length ? meta.read_grants[0].grant_id : null;
    if (!found) throw new Error("the channel lists no read grant");
    if (channel === owner) grantId = found;
  };

  $("revoke").addEventListener("click", async () => {
    if (!channel || !channel.read_token) return;
    try {
      if (!grantId) {
        await findGrant();
        showChannelCommands();
      }
      await call("POST", `/v1/channels/${channel.channel_id}/read-grants/${grantId}/revoke`, { headers: publishToken() });
      status("Read token revoked: its readers are disconnected.");
    } catch (error) {
      status(`Could not revoke: ${error.message}`);
    }
  });

  $("delete").addEventListener("click", async () => {
    if (!channel) return;
    try {
      await call("DELETE", `/v1/channels/${channel.channel_id}`, { headers: publishToken() });
      status("Channel deleted.");
    } catch (error) {
      status(`Could not delete: ${error.message}`);
    }
  });

  showCreateCommands();
})();
