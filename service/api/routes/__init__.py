"""One router per resource; `service.api.http.build_api` puts them together."""
