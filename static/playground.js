// The playground: create a channel, publish to it, and read it live.
// Plain DOM and fetch; the REST base URL comes from the page (configuration),
// the channel URL from the API's answer.
"use strict";

(() => {
  const root = document.getElementById("playground");
  const restUrl = root.dataset.restUrl.replace(/\/$/, "");
  const $ = (id) => document.getElementById(id);
  let channel = null;
  let events = null;

  const status = (text) => { $("status").textContent = text; };

  const decode = (base64) => {
    const bytes = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
    return new TextDecoder().decode(bytes);
  };

  const show = (message) => {
    const item = document.createElement("li");
    item.dataset.id = message.id;
    item.textContent = decode(message.payload);
    const time = document.createElement("time");
    time.dateTime = message.created_at;
    time.textContent = new Date(message.created_at).toLocaleTimeString();
    item.append(time);
    $("messages").append(item);
  };

  const follow = () => {
    // EventSource cannot send headers: a private channel's read token goes in ?token=.
    const url = channel.read_token ? `${channel.url}?token=${encodeURIComponent(channel.read_token)}` : channel.url;
    events = new EventSource(url);
    events.addEventListener("open", () => { $("stream-state").textContent = "connected"; });
    events.addEventListener("message", (event) => show(JSON.parse(event.data)));
    events.addEventListener("deleted", () => { $("stream-state").textContent = "channel deleted"; events.close(); });
    events.addEventListener("error", () => {
      // EventSource retries by itself, unless the server refused the stream (401, 404).
      $("stream-state").textContent =
        events.readyState === EventSource.CLOSED ? "closed (channel gone or token refused)" : "reconnecting…";
    });
  };

  $("create").addEventListener("click", async () => {
    const visibility = document.querySelector("input[name=visibility]:checked").value;
    status("Creating a channel…");
    try {
      const response = await fetch(`${restUrl}/v1/channels`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ visibility }),
      });
      const body = await response.json();
      if (!response.ok) throw new Error(body.error ? body.error.message : response.statusText);
      channel = body;
      if (events) events.close();
      $("messages").replaceChildren();
      $("channel-url").textContent = channel.url;
      $("publish-token").textContent = channel.publish_token;
      const isPrivate = Boolean(channel.read_token);
      $("read-token").textContent = channel.read_token || "";
      $("read-token-label").hidden = !isPrivate;
      $("read-token-value").hidden = !isPrivate;
      $("channel").hidden = false;
      $("message").disabled = false;
      $("send").disabled = false;
      follow();
      status("Channel created. Publish something.");
    } catch (error) {
      status(`Could not create a channel: ${error.message}`);
    }
  });

  $("publish").addEventListener("submit", async (event) => {
    event.preventDefault();
    const text = $("message").value;
    if (!channel || text === "") return;
    // Clear at once so typing during the request is kept; restore on failure.
    $("message").value = "";
    try {
      const response = await fetch(`${restUrl}/v1/channels/${channel.channel_id}/publish`, {
        method: "POST",
        headers: { "content-type": "text/plain; charset=utf-8", "x-publish-token": channel.publish_token },
        body: text,
      });
      const body = await response.json();
      if (!response.ok) throw new Error(body.error ? body.error.message : response.statusText);
      status(`Published ${body.message_id}.`);
    } catch (error) {
      if ($("message").value === "") $("message").value = text;
      status(`Could not publish: ${error.message}`);
    }
  });
})();
