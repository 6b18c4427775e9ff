// Swagger UI for this server's own OpenAPI document (served from the package, no CDN:
// the page's Content-Security-Policy allows scripts from this server only).
window.ui = SwaggerUIBundle({
  url: "openapi.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
});
