"""A persona-generation service: the kind of application taskmodels came from, embedding its container.

cd examples && uvicorn fastapi_app.main:app          # needs the providers' API keys, or
cd examples && PERSONAS_OPENAI_BASE_URL=http://127.0.0.1:8080/v1 uvicorn fastapi_app.main:app
"""
