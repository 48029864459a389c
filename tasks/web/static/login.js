document.getElementById("login").addEventListener("submit", async (event) => {
  event.preventDefault();
  const response = await fetch("/login", {method: "POST", headers: {"Content-Type": "application/json"},
    body: JSON.stringify({token: document.getElementById("token").value})});
  if (response.ok) { location.reload(); return; }
  const data = await response.json().catch(() => ({}));
  document.getElementById("login-error").textContent = data.error || `refused (${response.status})`;
});
