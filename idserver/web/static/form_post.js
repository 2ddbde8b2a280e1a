// Submits the OpenID Connect form_post response as soon as the page loads.
document.getElementById("form-post").submit();
